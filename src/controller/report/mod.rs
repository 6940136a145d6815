//! The end of a reconcile, what it tells: the query's status ([`status`]), Kubernetes Events
//! on a change of outcome ([`events`]) and the hooks metrics listen on ([`observer`]).
//!
//! May use: the plan's counts and write kinds, the CRD status types, the ECS error types.

pub mod events;
pub mod observer;
pub mod status;
