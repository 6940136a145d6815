//! The only path that writes to the Kubernetes API: server-side applies of ImagePipelines under
//! one field manager, deletions with preconditions, and status patches. It can be told that this
//! replica is not the leader, and then refuses to write.
//!
//! A plan's writes run with bounded parallelism ([`Writer::with_concurrency`]): each object
//! appears once in a plan and plans of one namespace run one at a time, so there is still one
//! writer per object. Each object is built just before its apply and only the record of the
//! answer is kept. The client backs off on 429 (API priority and fairness) and 503/504 as the
//! server's `Retry-After` says (kube's default retry policy).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::sync::Mutex;

use futures::StreamExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::controller::error::ControllerError;
use crate::controller::mirror::mirrored::Mirrored;
use crate::controller::mirror::ownership::FIELD_MANAGER;
use crate::controller::mirror::ownership::is_query_ref;
use crate::controller::mirror::view::{RecentWrites, Written};
use crate::controller::planning::plan::{Deletion, Plan, Write, WriteAction};
use crate::controller::report::observer::SyncObserver;
use crate::controller::report::status::WriteFailure;
use crate::crd::{ImagePipeline, ImagePipelineQuery, ImagePipelineQueryStatus};

/// Writes on behalf of the controller.
#[derive(Clone)]
pub struct Writer {
    client: Client,
    manager: Arc<str>,
    leading: Arc<AtomicBool>,
    concurrency: usize,
}

/// How many writes of one plan are in flight at once, unless told otherwise.
pub const DEFAULT_WRITE_CONCURRENCY: usize = 16;

impl Writer {
    /// A writer that may write (until told otherwise through [`Writer::leadership`]).
    pub fn new(client: Client) -> Self {
        Self {
            client,
            manager: FIELD_MANAGER.into(),
            leading: Arc::new(AtomicBool::new(true)),
            concurrency: DEFAULT_WRITE_CONCURRENCY,
        }
    }

    /// The same writer with at most `n` (at least 1) writes of a plan in flight at once.
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// The same writer, writing under `manager` (a shard's field manager, see
    /// [`shard_field_manager`](crate::controller::mirror::ownership::shard_field_manager)).
    pub fn with_field_manager(mut self, manager: &str) -> Self {
        self.manager = manager.into();
        self
    }

    /// The field manager of its writes.
    pub fn field_manager(&self) -> &str {
        &self.manager
    }

    /// The flag a leader election sets: `false` disables every write.
    pub fn leadership(&self) -> Arc<AtomicBool> {
        self.leading.clone()
    }

    /// The same writer, writing only while `gate` is `true` (leader election sets it).
    pub fn with_gate(mut self, gate: Arc<AtomicBool>) -> Self {
        self.leading = gate;
        self
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

    /// One server-side apply of a planned object, forced, under its field manager; returns the
    /// record of the object as stored. A release keeps the content the object has on the
    /// server (read just before; the planned resourceVersion still guards the apply). Query
    /// owner references someone else added are then removed (see [`Write::strip_foreign_owners`]).
    pub async fn apply(
        &self,
        namespace: &str,
        write: &Write<'_>,
    ) -> Result<Mirrored, ControllerError> {
        self.check_leading()?;
        let api: Api<ImagePipeline> = Api::namespaced(self.client.clone(), namespace);
        let failed = |source| ControllerError::Write {
            name: write.name().to_string(),
            source,
        };
        let body = if write.relinquish {
            // Naming nothing gives up every field this manager owns; the resourceVersion still
            // guards against a change since the plan.
            json!({
                "apiVersion": format!("{}/{}", crate::crd::GROUP, crate::crd::VERSION),
                "kind": "ImagePipeline",
                "metadata": {
                    "name": write.name(),
                    "namespace": namespace,
                    "resourceVersion": write.resource_version,
                },
            })
        } else {
            let object = match write.object() {
                Some(object) => object,
                None => {
                    let current = api.get(write.name()).await.map_err(failed)?;
                    write.object_with(current.spec)
                }
            };
            write
                .apply_body(&object)
                .map_err(|e| failed(kube::Error::SerdeError(e)))?
        };
        let params = PatchParams::apply(&self.manager).force();
        let after = api
            .patch(write.name(), &params, &Patch::Apply(&body))
            .await
            .map_err(failed)?;
        if !write.strip_foreign_owners {
            return Ok(Mirrored::of_as(&after, &self.manager));
        }
        self.check_leading()?;
        let refs = after.metadata.owner_references.clone().unwrap_or_default();
        let wanted = |uid: &str| {
            write.owners.iter().any(|o| o.uid == uid)
                || write.other_instances_owners.iter().any(|o| o == uid)
        };
        let keep: Vec<_> = refs
            .iter()
            .filter(|r| !is_query_ref(r) || wanted(&r.uid))
            .cloned()
            .collect();
        if keep.len() == refs.len() {
            return Ok(Mirrored::of_as(&after, &self.manager));
        }
        // A merge patch replaces the whole list: the entries kept keep their owners, the
        // removed ones go with whoever set them. The resourceVersion makes it a conflict if
        // anything changed since the apply.
        let patch = json!({
            "metadata": {
                "resourceVersion": after.metadata.resource_version,
                "ownerReferences": keep,
            }
        });
        let params = PatchParams {
            field_manager: Some(self.manager.to_string()),
            ..PatchParams::default()
        };
        let stripped = api
            .patch(write.name(), &params, &Patch::Merge(&patch))
            .await
            .map_err(failed)?;
        Ok(Mirrored::of_as(&stripped, &self.manager))
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
    /// sees it even before the cache does. Writes run [`Writer::with_concurrency`] at a time.
    /// A write the API server refuses (quota, admission, an invalid object, a conflict) does
    /// not stop the others: every write and deletion of the plan is attempted, and the refused
    /// ones are returned. Only losing the leadership stops the plan (an error).
    pub async fn apply_plan(
        &self,
        namespace: &str,
        plan: &Plan<'_>,
        recent: &RecentWrites,
        observer: &dyn SyncObserver,
    ) -> Result<Vec<WriteFailure>, ControllerError> {
        let failures = Mutex::new(Vec::new());
        let refused = |action: WriteAction, error: ControllerError| {
            let failure = match error {
                ControllerError::Write { name, source } => write_failure(name, action, &source),
                other => return Err(other),
            };
            observer.write_failed(action);
            failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(failure);
            Ok(())
        };
        let stopped = Mutex::new(None);
        let stop = |e: ControllerError| {
            stopped
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(e);
        };
        futures::stream::iter(plan.writes.iter())
            .for_each_concurrent(self.concurrency, |write| async {
                match self.apply(namespace, write).await {
                    Ok(after) => {
                        observer.object_written(write.kind);
                        recent.record(
                            namespace,
                            write.name(),
                            Written {
                                base_resource_version: write.resource_version.clone(),
                                after: Some(Arc::new(after)),
                            },
                        );
                    }
                    Err(e) => {
                        if let Err(e) = refused(write.kind.into(), e) {
                            stop(e);
                        }
                    }
                }
            })
            .await;
        if let Some(e) = stopped.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(e);
        }
        futures::stream::iter(plan.deletions.iter())
            .for_each_concurrent(self.concurrency, |deletion| async {
                match self.delete(namespace, deletion).await {
                    Ok(()) => {
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
                    Err(e) => {
                        if let Err(e) = refused(WriteAction::Delete, e) {
                            stop(e);
                        }
                    }
                }
            })
            .await;
        if let Some(e) = stopped.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(e);
        }
        let mut failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
        failures.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(failures)
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
        // Every instance writes status under the one operator manager: only the instance
        // serving a query writes its status, and a query moved between shards must not keep
        // fields its old shard set.
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch_status(&name, &params, &Patch::Apply(&body))
            .await
            .map(|_| ())
            .map_err(|source| ControllerError::Status { name, source })
    }
}

/// The failure of `action` on `name` as status reports it.
fn write_failure(name: String, action: WriteAction, source: &kube::Error) -> WriteFailure {
    match source {
        kube::Error::Api(status) => WriteFailure {
            name,
            action,
            code: status.code,
            reason: status.reason.clone(),
            message: status.message.clone(),
        },
        other => WriteFailure {
            name,
            action,
            code: 0,
            reason: String::new(),
            message: other.to_string(),
        },
    }
}
