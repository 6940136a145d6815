//! The ImagePipelineQuery controller: watches queries, lists ECS image pipelines for each, and
//! mirrors them as ImagePipeline objects.
//!
//! The reconcile is a pipeline of named steps, one module each: [`validate`] the spec, resolve
//! [`credentials`], [`source`] the listing (shared between identical queries), [`plan`] the
//! writes (pure, from [`desired`] objects and the cache [`view`]), apply them through the
//! [`writer`], then [`status`] and [`events`]. The mirrored objects are watched once and kept
//! only as compact [`mirrored`] records in the [`cache`]. [`schedule`] decides when a query is due,
//! [`reconcile`] strings the steps together and [`run`] starts everything.
//!
//! Server-side apply and shared objects: every write is one apply under the single field
//! manager [`FIELD_MANAGER`], carrying the object's complete content, the complete list of
//! query owner references and the labels/annotations merged from those owners' templates, all
//! computed from the cache. Concurrent queries cannot clobber each other's owner references
//! because plans and writes of one namespace are serialized in-process and planned from a view
//! that already includes this process's latest writes, and because updates carry the
//! `resourceVersion` they were planned from (any other writer in between turns the apply into
//! a conflict and a retry). Deletions carry UID and resourceVersion preconditions.

pub mod cache;
pub mod context;
pub mod credentials;
pub mod desired;
pub mod error;
pub mod events;
pub mod mirrored;
pub mod observer;
pub mod ownership;
pub mod plan;
pub mod reconcile;
pub mod run;
pub mod schedule;
pub mod source;
pub mod status;
pub mod sync;
pub mod validate;
pub mod view;
pub mod writer;

pub use context::{Context, QueryMemory};
pub use credentials::{AmbientPolicy, CredentialsResolver};
pub use error::ControllerError;
pub use observer::{NoopObserver, SyncObserver};
pub use reconcile::{error_policy, reconcile};
pub use run::{RunArgs, RunHooks, run_with, scopes};
pub use source::{ListingKey, PipelineSource, SHARE_WINDOW, SharedListings};
pub use writer::Writer;

pub use ownership::FIELD_MANAGER;
pub use schedule::REQUESTED_AT_ANNOTATION;
