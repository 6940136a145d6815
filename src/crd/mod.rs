//! The custom resources: what users write (`ImagePipelineQuery`) and what the operator writes
//! (`ImagePipeline`).

pub mod pipeline;
pub mod query;
pub mod schema;

pub use pipeline::{ImagePipeline, ImagePipelineSpec, PipelineTagSpec};
pub use query::{
    ImagePipelineQuery, ImagePipelineQuerySpec, ImagePipelineQueryStatus, MirrorTemplate,
    QueryCredentials, QueryTag, SecretReference, SyncErrorStatus, SyncResultStatus,
    TemplateMetadata, crds_yaml,
};

/// The API group of both resources.
pub const GROUP: &str = "ecs.mirror.io";
/// The API version of both resources.
pub const VERSION: &str = "v1alpha1";
/// The `kubectl get` category shared by both resources (`kubectl get imagepipeline-mirror`).
pub const CATEGORY: &str = "imagepipeline-mirror";
