//! The only path that writes to the Kubernetes API: server-side applies of ImagePipelines under
//! one field manager, deletions with preconditions, and status patches. It can be told that this
//! replica is not the leader, and then refuses to write.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::error::ControllerError;
use super::plan::{Deletion, Plan, Write};
use super::view::{RecentWrites, Written};
use super::{FIELD_MANAGER, SyncObserver};
use crate::crd::{ImagePipeline, ImagePipelineQuery, ImagePipelineQueryStatus};

/// Writes on behalf of the controller.
#[derive(Clone)]
pub struct Writer {
    client: Client,
    leading: Arc<AtomicBool>,
}

impl Writer {
    /// A writer that may write (until told otherwise through [`Writer::leadership`]).
    pub fn new(client: Client) -> Self {
        Self {
            client,
            leading: Arc::new(AtomicBool::new(true)),
        }
    }

    /// The flag a leader election sets: `false` disables every write.
    pub fn leadership(&self) -> Arc<AtomicBool> {
        self.leading.clone()
    }

    /// Whether this replica may write.
    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    fn check_leading(&self) -> Result<(), ControllerError> {
        if self.is_leading() {
            Ok(())
        } else {
            Err(ControllerError::NotLeader)
        }
    }

    /// One server-side apply of a planned object, forced, under [`FIELD_MANAGER`].
    pub async fn apply(
        &self,
        namespace: &str,
        write: &Write,
    ) -> Result<ImagePipeline, ControllerError> {
        self.check_leading()?;
        let api: Api<ImagePipeline> = Api::namespaced(self.client.clone(), namespace);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(write.name(), &params, &Patch::Apply(&write.object))
            .await
            .map_err(|source| ControllerError::Write {
                name: write.name().to_string(),
                source,
            })
    }

    /// Deletes an object if it still has the planned UID and resourceVersion. An object that is
    /// already gone counts as deleted.
    pub async fn delete(
        &self,
        namespace: &str,
        deletion: &Deletion,
    ) -> Result<(), ControllerError> {
        self.check_leading()?;
        let api: Api<ImagePipeline> = Api::namespaced(self.client.clone(), namespace);
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: deletion.uid.clone(),
                resource_version: deletion.resource_version.clone(),
            }),
            ..DeleteParams::default()
        };
        match api.delete(&deletion.name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(source) => Err(ControllerError::Write {
                name: deletion.name.clone(),
                source,
            }),
        }
    }

    /// Carries out `plan` in `namespace`, recording every write in `recent` so the next plan
    /// sees it even before the cache does.
    pub async fn apply_plan(
        &self,
        namespace: &str,
        plan: &Plan,
        recent: &RecentWrites,
        observer: &dyn SyncObserver,
    ) -> Result<(), ControllerError> {
        for write in &plan.writes {
            let after = self.apply(namespace, write).await?;
            observer.object_written(write.kind);
            recent.record(
                namespace,
                write.name(),
                Written {
                    base_resource_version: write.object.metadata.resource_version.clone(),
                    after: Some(Arc::new(after)),
                },
            );
        }
        for deletion in &plan.deletions {
            self.delete(namespace, deletion).await?;
            observer.object_deleted();
            recent.record(
                namespace,
                &deletion.name,
                Written {
                    base_resource_version: deletion.resource_version.clone(),
                    after: None,
                },
            );
        }
        Ok(())
    }

    /// Applies `status` to the query's status subresource under [`FIELD_MANAGER`].
    pub async fn patch_status(
        &self,
        query: &ImagePipelineQuery,
        status: &ImagePipelineQueryStatus,
    ) -> Result<(), ControllerError> {
        self.check_leading()?;
        let namespace = query
            .namespace()
            .ok_or(ControllerError::MissingObjectKey("namespace"))?;
        let name = query.name_any();
        let api: Api<ImagePipelineQuery> = Api::namespaced(self.client.clone(), &namespace);
        let body = json!({
            "apiVersion": format!("{}/{}", crate::crd::GROUP, crate::crd::VERSION),
            "kind": "ImagePipelineQuery",
            "status": status,
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch_status(&name, &params, &Patch::Apply(&body))
            .await
            .map(|_| ())
            .map_err(|source| ControllerError::Status { name, source })
    }
}
