//! Step 1 of a reconcile, what a sync starts from: the query's spec checked ([`validate`]), its
//! credentials resolved ([`credentials`]), whether it is due and which listing it may use
//! ([`schedule`]), and the listing itself, shared between identical queries ([`source`]).
//!
//! Owns: the spec rules, the credential cache, the shared listings and the pacing rules. May
//! use: the CRD types and the ECS client. Uses nothing else of the controller.

pub mod credentials;
pub mod feed;
pub mod schedule;
pub mod source;
pub mod validate;
