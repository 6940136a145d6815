//! Everything that talks to Alibaba Cloud ECS `DescribeImagePipelines`: signing, the typed
//! filter, lenient decoding, credentials, errors and the paging client.

pub mod ambient;
pub mod client;
pub mod credentials;
pub mod error;
pub mod filter;
pub mod listing;
pub mod model;
pub mod ratelimit;
pub mod redact;
pub mod retry;
pub mod sign;
pub mod transport;

pub use client::{ClientConfig, EcsClient, PageEvent};
pub use credentials::{Credentials, CredentialsError, CredentialsProvider, SharedProvider};
pub use error::{ApiError, EcsError};
pub use filter::{PipelineFilter, TagFilter};
pub use listing::{CallObserver, Listing, ListingError, SharedObserver};
pub use model::{ImagePipelineItem, PipelinePage, PipelineTag};

/// The API version of ECS.
pub const ECS_API_VERSION: &str = "2014-05-26";
/// The action this operator calls.
pub const DESCRIBE_IMAGE_PIPELINES: &str = "DescribeImagePipelines";
