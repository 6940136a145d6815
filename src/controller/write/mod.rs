//! The only path that writes to the Kubernetes API: [`writer`] carries out a plan (server-side
//! applies, repairs of foreign edits, guarded deletions) and patches status, refusing every
//! write while this replica does not lead.
//!
//! May use: [`super::planning`]'s plan, [`super::mirror`]'s records and recent writes,
//! [`super::report`]'s failure type and observer.

pub mod writer;
