//! `imagepipeline-operator run`: wires the ECS client, the ambient credentials, metrics, the
//! admin listener and leader election around the controller.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::{error, info, warn};

use super::CliError;
use crate::admin::{self, AdminState, Readiness};
use crate::controller::{self, RunArgs, RunHooks};
use crate::ecs::ambient::{AmbientOverrides, ambient_provider};
use crate::ecs::{ClientConfig, EcsClient, SharedProvider};
use crate::leader::{Leadership, LeaseSettings, run_while_leading};
use crate::metrics::{Metrics, ProviderLabels};

/// How long a leader that got SIGTERM may take to finish its in-flight reconciles.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// How long a stopping replica waits for its Lease to be released.
const LEASE_RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the operator");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// This replica's identity for the Lease: the pod name, else the host name.
fn identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| format!("imagepipeline-operator-{}", std::process::id()))
}

/// Asks the ambient chain once, so the log and metrics say which identity is in use.
async fn announce_ambient(ambient: &SharedProvider, metrics: &Metrics, allowed: bool) {
    if !allowed {
        info!("no namespace may use ambient credentials; every query needs credentials.secretRef");
        return;
    }
    match tokio::time::timeout(Duration::from_secs(10), ambient.credentials()).await {
        Ok(Ok(_)) => {
            info!(provider = %ambient.name(), "ambient credentials available");
            metrics
                .credentials_provider
                .get_or_create(&ProviderLabels {
                    provider: ambient.name(),
                })
                .set(1);
        }
        Ok(Err(e)) => {
            warn!(error = %e, "no ambient credentials yet; queries relying on them will report CredentialsError")
        }
        Err(_) => warn!("looking up ambient credentials timed out; will retry on first use"),
    }
}

/// Runs the controller until SIGTERM or SIGINT.
pub async fn run(args: RunArgs) -> Result<(), CliError> {
    let metrics = Arc::new(Metrics::for_shard(args.shard_name()));
    let ecs = EcsClient::new(ClientConfig {
        endpoint: args.ecs_endpoint.clone(),
        rate_limit_qps: args.ecs_rate_limit,
        rate_limit_burst: crate::ecs::ratelimit::burst_for(args.ecs_rate_limit),
        observer: Some(metrics.clone()),
        ..ClientConfig::default()
    })?;
    let ambient = ambient_provider(&AmbientOverrides {
        sts_endpoint: args.sts_endpoint.clone(),
        imds_endpoint: args.imds_endpoint.clone(),
    })
    .map_err(|e| CliError::Credentials(e.to_string()))?;
    let policy = args.ambient_policy();
    announce_ambient(
        &ambient,
        &metrics,
        !policy.namespaces.is_empty() || policy.selector.is_some(),
    )
    .await;

    let kube = kube::Client::try_default()
        .await
        .map_err(|e| CliError::Controller(controller::ControllerError::Client(e)))?;
    for scope in controller::scopes(&args) {
        controller::run::check_crds(&kube, scope.as_deref()).await?;
    }

    let readiness = Arc::new(Readiness::new(args.leader_election));
    let listener = TcpListener::bind(args.admin_addr)
        .await
        .map_err(|e| CliError::Admin(format!("binding {}: {e}", args.admin_addr)))?;
    // The bound address, not the flag: with port 0 this is the only place the port shows.
    let admin_addr = listener.local_addr().unwrap_or(args.admin_addr);
    info!(addr = %admin_addr, "serving /metrics, /healthz and /readyz");
    let admin_state = AdminState {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
    };
    let admin = tokio::spawn(async move {
        if let Err(e) = admin::serve(listener, admin_state, shutdown_signal()).await {
            error!(error = %e, "admin listener failed");
        }
    });

    let leadership = if args.leader_election {
        let lease = LeaseSettings {
            name: args.shard_lease_name(),
            namespace: args.lease_namespace.clone(),
            identity: identity(),
            duration: args.lease_duration,
            grace: (args.lease_duration / 3).max(Duration::from_secs(1)),
        };
        info!(lease = %lease.name, namespace = %lease.namespace, identity = %lease.identity, "leader election on");
        let l = Leadership::elect(kube.clone(), &lease)
            .await
            .map_err(|e| CliError::Admin(e.to_string()))?;
        readiness.set_lease_manager_running(true);
        l
    } else {
        Leadership::always()
    };

    let source: Arc<dyn controller::PipelineSource> = Arc::new(ecs);
    // The writer's own gate: it refuses every write the moment the lease is lost, even from a
    // task that outlived the controller future.
    let may_write = Arc::new(AtomicBool::new(false));
    let hooks = RunHooks {
        ambient: Some(ambient),
        observer: metrics.clone(),
        readiness: Some(readiness.clone()),
        may_write: Some(may_write.clone()),
    };
    let leading = leadership.leading.clone();
    let on_change = {
        let (metrics, readiness) = (metrics.clone(), readiness.clone());
        move |leading: bool| {
            may_write.store(leading, Ordering::SeqCst);
            metrics.leader.set(i64::from(leading));
            readiness.set_leading(leading);
        }
    };
    let controllers = run_while_leading(
        leading.clone(),
        || {
            let (kube, args, source, hooks) =
                (kube.clone(), args.clone(), source.clone(), hooks.clone());
            async move {
                if let Err(e) = controller::run_with(kube, args, source, hooks).await {
                    error!(error = %e, "controller stopped with an error");
                }
            }
        },
        on_change,
    );
    tokio::pin!(controllers);
    tokio::select! {
        () = &mut controllers => {}
        () = shutdown_signal() => {
            if *leading.borrow() {
                info!("shutting down: letting in-flight reconciles finish");
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, &mut controllers).await;
            }
        }
    }
    leadership.release(LEASE_RELEASE_TIMEOUT).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), admin).await;
    info!("stopped");
    Ok(())
}
