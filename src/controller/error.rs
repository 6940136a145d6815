//! The one error type of the controller boundary.

/// What can make a reconcile (or the controller's start) fail. Listing failures, invalid specs
/// and missing credentials are not errors here: they are outcomes, reported in status.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// An apply or delete of an ImagePipeline failed (a conflict means something else wrote the
    /// object since it was read; the sync is retried).
    #[error("writing ImagePipeline {name}: {source}")]
    Write {
        /// The object name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Patching the query's status failed.
    #[error("patching the status of ImagePipelineQuery {name}: {source}")]
    Status {
        /// The query name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Reading a Secret or Namespace failed.
    #[error("reading credentials: {0}")]
    Credentials(#[source] kube::Error),
    /// This replica does not hold the lease; it must not write.
    #[error("not the leader: writes are disabled on this replica")]
    NotLeader,
    /// The object lacks a field every stored object has.
    #[error("object has no {0}")]
    MissingObjectKey(&'static str),
    /// A CRD the controller needs is not installed.
    #[error(
        "the CustomResourceDefinition {crd} is not installed or not served ({source}); install it with `imagepipeline-operator crds | kubectl apply -f -` (or `kubectl apply -f crds/`)"
    )]
    CrdMissing {
        /// The CRD name.
        crd: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The Kubernetes client could not be configured.
    #[error("connecting to Kubernetes (in-cluster config or KUBECONFIG): {0}")]
    Client(#[source] kube::Error),
    /// A flag has an unusable value.
    #[error("invalid flag: {0}")]
    Config(String),
}

impl ControllerError {
    /// A low-cardinality name for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ControllerError::Write { .. } => "write",
            ControllerError::Status { .. } => "status",
            ControllerError::Credentials(_) => "credentials_read",
            ControllerError::NotLeader => "not_leader",
            ControllerError::MissingObjectKey(_) => "missing_object_key",
            ControllerError::CrdMissing { .. } => "crd_missing",
            ControllerError::Client(_) => "client",
            ControllerError::Config(_) => "config",
        }
    }
}
