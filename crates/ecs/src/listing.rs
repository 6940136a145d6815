//! The result of listing every page of a filter: what the controller consumes.

use std::sync::Arc;

use super::error::EcsError;
use super::model::ImagePipelineItem;

/// A complete listing: every page was fetched and decoded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Listing {
    /// Every pipeline of every page, in the order the service returned them, each ID once.
    pub items: Vec<ImagePipelineItem>,
    /// Pages fetched in the listing that completed (after the last restart).
    pub pages: u32,
    /// HTTP calls made, including retries and restarted listings.
    pub calls: u32,
    /// Calls retried after a transient failure.
    pub retries: u32,
    /// Times the listing restarted from the first page after `Invalid.NextToken`.
    pub restarts: u32,
    /// Items skipped because they had no usable `ImagePipelineId`.
    pub skipped_items: usize,
    /// The `RequestId` of the last page.
    pub last_request_id: Option<String>,
}

/// A listing that did not complete. Nothing of it may be acted on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("listing failed at page {page}: {error}")]
pub struct ListingError {
    /// The 1-based page that failed (1 for errors before the first call).
    pub page: u32,
    /// Calls made before giving up.
    pub calls: u32,
    /// Why it failed, after the client's retries.
    pub error: EcsError,
}

/// Counts ECS calls for metrics; the client reports every attempt through it.
pub trait CallObserver: Send + Sync + std::fmt::Debug {
    /// One HTTP attempt of `action` ended with `code`: `Success`, an API error code, or a local
    /// failure name such as `Timeout` (see [`EcsError::code`]).
    fn on_call(&self, action: &str, code: &str);
    /// An attempt is being retried after a transient failure with `code`.
    fn on_retry(&self, action: &str, code: &str);
}

/// A shared observer.
pub type SharedObserver = Arc<dyn CallObserver>;
