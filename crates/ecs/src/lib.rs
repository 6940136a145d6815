//! A client for Alibaba Cloud ECS `DescribeImagePipelines` (API 2014-05-26): RPC signature v1
//! ([`sign`]), the typed filter ([`PipelineFilter`]), lenient decoding ([`model`]), static and
//! ambient credentials ([`credentials`], [`ambient`]: environment, RRSA/OIDC, the ECS RAM role),
//! retries with backoff ([`retry`]), a rate limit per AccessKey ([`ratelimit`]) and paging
//! ([`EcsClient::list_all`], [`EcsClient::pages`], and [`EcsClient::pages_into`] for a caller that
//! reads each item once, in place in the body). It has no Kubernetes dependency: the
//! operator uses it, and so can any Rust program.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use imagepipeline_ecs::credentials::StaticProvider;
//! use imagepipeline_ecs::{ClientConfig, Credentials, EcsClient, PipelineFilter, SharedProvider};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let client = EcsClient::new(ClientConfig::default())?;
//! let credentials: SharedProvider = Arc::new(StaticProvider::new(
//!     "example",
//!     Credentials::new("LTAI...", "secret"),
//! ));
//! let mut filter = PipelineFilter::region("cn-hangzhou");
//! filter.name = Some("golden-base".into());
//! let listing = client.list_all(&filter, &credentials).await?;
//! for pipeline in &listing.items {
//!     println!("{} {:?}", pipeline.image_pipeline_id, pipeline.base_image);
//! }
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod ambient;
pub mod buffers;
pub mod client;
pub mod credentials;
pub mod error;
mod fast;
pub mod filter;
mod http1;
pub mod known;
pub mod listing;
pub mod model;
pub mod ratelimit;
pub mod redact;
pub mod retry;
mod scan;
pub mod sign;
mod tls;
pub mod transport;
pub mod view;

pub use client::{ClientConfig, EcsClient, PageEvent};
pub use credentials::{Credentials, CredentialsError, CredentialsProvider, SharedProvider};
pub use error::{ApiError, EcsError};
pub use filter::{PipelineFilter, TagFilter};
pub use known::{KnownLists, list_hash};
pub use listing::{CallObserver, Listing, ListingError, SharedObserver};
pub use model::{ImagePipelineItem, PipelinePage, PipelineTag};
pub use view::{ItemSink, ItemView, TagView};

/// The API version of ECS.
pub const ECS_API_VERSION: &str = "2014-05-26";
/// The action this operator calls.
pub const DESCRIBE_IMAGE_PIPELINES: &str = "DescribeImagePipelines";
