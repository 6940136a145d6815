//! What is in the cluster: the one watch of mirrored ImagePipelines ([`watch`]) reduced to compact
//! records ([`cache`], [`mirrored`]), who wrote which of their fields ([`ownership`]), and the view a
//! plan reads, corrected by this process's own writes the watch has not delivered yet
//! ([`view`]).
//!
//! Owns: the mirrored index and the record of recent writes (one owner: [`view::RecentWrites`]
//! listens to the [`cache`]). May use: the CRD types and the ECS item model (to hash content).

pub mod cache;
pub mod mirrored;
pub mod ownership;
pub mod view;
pub mod watch;
