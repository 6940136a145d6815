//! The ImagePipelineQuery controller: watches queries, lists ECS image pipelines for each, and
//! mirrors them as ImagePipeline objects.
//!
//! The folders follow a reconcile, which flows one way:
//!
//! ```text
//! inputs (query, credentials, listing) -> planning (desired set, plan; pure) -> write -> report
//!                                          ^ mirror (the mirrored index and recent writes)
//! ```
//!
//! - [`inputs`]: [`validate`] the spec, resolve [`credentials`], decide when a query is due
//!   ([`schedule`]) and get the listing, shared between identical queries ([`source`]);
//! - [`mirror`]: the mirrored objects, watched once and kept as compact [`mirrored`] records in
//!   the [`cache`], with who set which field ([`ownership`]) and the [`view`] a plan reads;
//! - [`planning`]: the [`desired`] owners and templates and the [`plan`] of writes (pure);
//! - [`write`]: the [`writer`], the only path that writes;
//! - [`report`]: [`status`], [`events`] and the metrics hooks ([`observer`]).
//!
//! At the top, [`sync`] is one attempt (list, plan, write), [`reconcile`] strings the steps
//! together, [`context`] is what reconciles share and [`run`] starts everything.
//!
//! Server-side apply and shared objects: every write is one apply under the single field
//! manager [`FIELD_MANAGER`], carrying the object's complete content, the complete list of
//! query owner references and the labels/annotations merged from those owners' templates, all
//! computed from the cache. Concurrent queries cannot clobber each other's owner references
//! because plans and writes of one namespace are serialized in-process and planned from a view
//! that already includes this process's latest writes, and because updates carry the
//! `resourceVersion` they were planned from (any other writer in between turns the apply into
//! a conflict and a retry). Deletions carry UID and resourceVersion preconditions.

pub mod context;
pub mod error;
pub mod inputs;
pub mod mirror;
pub mod planning;
pub mod reconcile;
pub mod report;
pub mod run;
pub mod sync;
pub mod write;

// The steps' modules by their short names, as the rest of the crate and the tests use them.
pub use inputs::{credentials, feed, schedule, source, validate};
pub use mirror::{cache, mirrored, ownership, view};
pub use planning::{desired, plan};
pub use report::{events, observer, status};
pub use write::writer;

pub use context::{Context, QueryMemory};
pub use credentials::{AmbientPolicy, CredentialsResolver};
pub use error::ControllerError;
pub use observer::{NoopObserver, SyncObserver};
pub use reconcile::{error_policy, reconcile};
pub use run::{RunArgs, RunHooks, run_with, scopes};
pub use source::{ListingKey, PipelineSource, SHARE_WINDOW, SharedListings, Sharing};
pub use sync::HELD_UPDATES;
pub use writer::Writer;

pub use ownership::FIELD_MANAGER;
pub use schedule::REQUESTED_AT_ANNOTATION;
