//! Leader election on a `coordination.k8s.io` Lease (`kube-lease-manager`), and running the
//! controller only while this replica holds it.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Lease settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    /// Name of the Lease.
    pub name: String,
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease is valid after its last renewal; a follower takes over within it.
    pub duration: Duration,
    /// How long before expiry the holder renews.
    pub grace: Duration,
}

/// Why leader election could not start.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The lease manager failed to start.
    #[error("leader election on Lease {namespace}/{name}: {message}")]
    Lease {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// What failed.
        message: String,
    },
}

/// Whether this replica leads, as a watch channel.
#[derive(Debug)]
pub struct Leadership {
    /// `true` while this replica holds the lease.
    pub leading: watch::Receiver<bool>,
    // Keeps the constant channel of a single replica open.
    _sender: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<()>>,
}

impl Leadership {
    /// A replica without leader election: always leading.
    pub fn always() -> Self {
        let (tx, rx) = watch::channel(true);
        Self {
            leading: rx,
            _sender: Some(tx),
            task: None,
        }
    }

    /// Starts the lease manager; the channel turns `true` when the lease is acquired and
    /// `false` the moment it is lost.
    pub async fn elect(client: kube::Client, lease: &LeaseSettings) -> Result<Self, LeaderError> {
        let err = |message: String| LeaderError::Lease {
            namespace: lease.namespace.clone(),
            name: lease.name.clone(),
            message,
        };
        let manager = kube_lease_manager::LeaseManagerBuilder::new(client, &lease.name)
            .with_namespace(&lease.namespace)
            .with_identity(&lease.identity)
            .with_duration(lease.duration.as_secs())
            .with_grace(lease.grace.as_secs())
            .build()
            .await
            .map_err(|e| err(e.to_string()))?;
        let (rx, handle) = manager.watch().await;
        let task = tokio::spawn(async move {
            match handle.await {
                Ok(Ok(_)) => tracing::info!("lease manager stopped"),
                Ok(Err(e)) => tracing::error!(error = %e, "lease manager failed"),
                Err(e) => tracing::error!(error = %e, "lease manager task panicked"),
            }
        });
        Ok(Self {
            leading: rx,
            _sender: None,
            task: Some(task),
        })
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Runs `start()` each time `leading` turns true and drops it (stopping every write at once)
/// the moment it turns false, until `start()`'s future ends or the channel closes.
/// `on_change` is told about every transition (metrics, readiness).
pub async fn run_while_leading<F, Fut>(
    mut leading: watch::Receiver<bool>,
    mut start: F,
    on_change: impl Fn(bool),
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        if leading.wait_for(|l| *l).await.is_err() {
            return;
        }
        on_change(true);
        tracing::info!("leading: starting the controller");
        let lost = leading.wait_for(|l| !*l);
        tokio::select! {
            () = start() => {
                on_change(false);
                return;
            }
            lost = lost => {
                on_change(false);
                if lost.is_err() {
                    return;
                }
                tracing::warn!("lost the lease: controller stopped, no further writes");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn the_controller_runs_only_while_leading() {
        let (tx, rx) = watch::channel(false);
        let started = Arc::new(AtomicU32::new(0));
        let running = Arc::new(AtomicU32::new(0));
        let (s, r) = (started.clone(), running.clone());
        let task = tokio::spawn(run_while_leading(
            rx,
            move || {
                let (s, r) = (s.clone(), r.clone());
                async move {
                    s.fetch_add(1, Ordering::SeqCst);
                    r.fetch_add(1, Ordering::SeqCst);
                    struct Guard(Arc<AtomicU32>);
                    impl Drop for Guard {
                        fn drop(&mut self) {
                            self.0.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                    let _g = Guard(r);
                    futures::future::pending::<()>().await;
                }
            },
            |_| {},
        ));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            started.load(Ordering::SeqCst),
            0,
            "a follower must not start the controller"
        );
        tx.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(running.load(Ordering::SeqCst), 1);
        tx.send(false).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            running.load(Ordering::SeqCst),
            0,
            "losing the lease stops the controller"
        );
        tx.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(started.load(Ordering::SeqCst), 2);
        drop(tx);
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .unwrap()
            .unwrap();
    }
}
