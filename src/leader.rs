//! Leader election on a `coordination.k8s.io` Lease (`kube-lease-manager`), and running the
//! controller only while this replica holds it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

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
    /// The running lease manager's task: it releases the Lease once every receiver of its
    /// channel is gone (the supervisor holds the only one).
    manager: Option<ManagerSlot>,
}

impl Leadership {
    /// A replica without leader election: always leading.
    pub fn always() -> Self {
        let (tx, rx) = watch::channel(true);
        Self {
            leading: rx,
            _sender: Some(tx),
            task: None,
            manager: None,
        }
    }

    /// Gives the Lease up and waits (at most `timeout`) until the lease manager has released
    /// it, so a standby replica can take over at once instead of waiting for the lease to
    /// expire. Without this, a process that exits right after dropping its [`Leadership`]
    /// kills the release half-way (it runs in the manager's own task).
    pub async fn release(mut self, timeout: Duration) {
        if let Some(task) = self.task.take() {
            task.abort();
            // The supervisor owns the manager's receiver: only once it is dropped does the
            // manager see its channel closed and release the Lease.
            let _ = task.await;
        }
        let manager = self
            .manager
            .take()
            .and_then(|slot| slot.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(manager) = manager {
            match tokio::time::timeout(timeout, manager).await {
                Ok(_) => tracing::info!("lease released"),
                Err(_) => tracing::warn!(?timeout, "releasing the lease timed out"),
            }
        }
    }

    /// Starts the lease manager; the channel turns `true` when the lease is acquired and
    /// `false` the moment it is lost, or, when this replica cannot renew it (cut off from the
    /// API server), shortly before it expires: by then another replica may take it over. A
    /// standby reads the Lease every [`STANDBY_POLL`] and, the moment its holder released it,
    /// starts a fresh lease manager (which takes a free Lease at once) instead of sleeping
    /// until the old lease would have expired.
    pub async fn elect(client: kube::Client, lease: &LeaseSettings) -> Result<Self, LeaderError> {
        let first = build_manager(&client, lease).await?;
        let (tx, rx) = watch::channel(false);
        let guard = LeaseGuard {
            api: Api::namespaced(client.clone(), &lease.namespace),
            name: lease.name.clone(),
            identity: lease.identity.clone(),
            duration: lease.duration,
            grace: lease.grace,
        };
        let slot: ManagerSlot = Arc::default();
        let task = tokio::spawn(supervise(
            client,
            lease.clone(),
            first,
            guard,
            tx,
            slot.clone(),
        ));
        Ok(Self {
            leading: rx,
            _sender: None,
            task: Some(task),
            manager: Some(slot),
        })
    }
}

/// How often a standby replica reads the Lease to see it released.
pub const STANDBY_POLL: Duration = Duration::from_millis(500);

/// The running lease manager's task, for [`Leadership::release`] to wait on.
type ManagerSlot = Arc<std::sync::Mutex<Option<JoinHandle<()>>>>;

async fn build_manager(
    client: &kube::Client,
    lease: &LeaseSettings,
) -> Result<kube_lease_manager::LeaseManager, LeaderError> {
    kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &lease.name)
        .with_namespace(&lease.namespace)
        .with_identity(&lease.identity)
        .with_duration(lease.duration.as_secs())
        .with_grace(lease.grace.as_secs())
        .build()
        .await
        .map_err(|e| LeaderError::Lease {
            namespace: lease.namespace.clone(),
            name: lease.name.clone(),
            message: e.to_string(),
        })
}

/// Runs lease managers one after the other, forwarding each one's state to `tx` through the
/// guard; a new one replaces the current one when this replica is a standby and sees the
/// Lease released, or when the current one stops (a deleted Lease is created again).
async fn supervise(
    client: kube::Client,
    lease: LeaseSettings,
    first: kube_lease_manager::LeaseManager,
    guard: LeaseGuard,
    tx: watch::Sender<bool>,
    slot: ManagerSlot,
) {
    let mut next = Some(first);
    loop {
        let manager = match next.take() {
            Some(m) => m,
            None => match build_manager(&client, &lease).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "restarting the lease manager failed; retrying");
                    tokio::time::sleep(STANDBY_POLL).await;
                    continue;
                }
            },
        };
        let (manager_rx, handle) = manager.watch().await;
        let abort_manager = handle.abort_handle();
        let task = tokio::spawn(async move {
            match handle.await {
                Ok(Ok(_)) => tracing::debug!("lease manager stopped"),
                Ok(Err(e)) => tracing::error!(error = %e, "lease manager failed"),
                Err(e) if e.is_cancelled() => tracing::debug!("lease manager stopped"),
                Err(e) => tracing::error!(error = %e, "lease manager task panicked"),
            }
        });
        let previous = slot.lock().unwrap_or_else(|e| e.into_inner()).replace(task);
        drop(previous);
        tokio::select! {
            () = guard.forward(manager_rx, &tx) => {
                // The manager gave up (the Lease was deleted, or an API error it does not
                // retry): without a new one this replica would never lead again.
                tracing::warn!(lease = %guard.name, "the Lease was deleted or the lease manager stopped: starting a new one");
                // Stopped, not closed: a closed manager "releases" from its cached state, which
                // would clear a new Lease another replica may have created meanwhile.
                abort_manager.abort();
                await_manager(&slot).await;
                tokio::time::sleep(STANDBY_POLL).await;
            }
            () = guard.released(tx.subscribe()) => {
                tracing::info!(lease = %guard.name, "the Lease was released or deleted: competing for it now");
                // Dropping the forward dropped the receiver: the old manager (not the holder)
                // ends without touching the Lease.
                await_manager(&slot).await;
            }
        }
    }
}

/// Waits until the lease manager in `slot` (if any) has ended, and empties the slot.
async fn await_manager(slot: &ManagerSlot) {
    let manager = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(manager) = manager {
        let _ = manager.await;
    }
}

/// Whether `e` is the API server's 404.
fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 404)
}

/// Confirms, while the lease manager says this replica leads, that the Lease really names it
/// and was renewed recently enough. `kube-lease-manager` keeps reporting `true` while its
/// renewals fail, so a leader cut off from the API server would otherwise keep writing after
/// its lease expired and another replica took it over.
struct LeaseGuard {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    grace: Duration,
}

impl LeaseGuard {
    /// How often the leader reads its Lease.
    fn poll(&self) -> Duration {
        (self.grace / 2).max(Duration::from_millis(100))
    }

    /// How long before the lease's expiry an unconfirmed leader steps down.
    fn margin(&self) -> Duration {
        (self.grace / 4).max(Duration::from_millis(50))
    }

    /// Until when the Lease is ours: `None` if it names someone else, an error if it could not
    /// be read.
    async fn held_until(&self) -> Result<Option<Instant>, kube::Error> {
        let lease = self.api.get(&self.name).await?;
        let Some(spec) = lease.spec else {
            return Ok(None);
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(None);
        }
        let (Some(renewed), Some(seconds)) = (spec.renew_time, spec.lease_duration_seconds) else {
            return Ok(None);
        };
        let expires = renewed
            .0
            .checked_add(jiff::SignedDuration::from_secs(i64::from(seconds)))
            .unwrap_or(renewed.0);
        let left = Duration::try_from(expires.duration_since(jiff::Timestamp::now()))
            .unwrap_or(Duration::ZERO);
        Ok(Some(Instant::now() + left))
    }

    /// Resolves once this replica, while not leading, reads the Lease without a holder after
    /// having seen another replica hold it (that replica released it), or finds it deleted.
    async fn released(&self, mut leading: watch::Receiver<bool>) {
        let mut held_by_other = false;
        loop {
            tokio::time::sleep(STANDBY_POLL).await;
            if *leading.borrow_and_update() {
                held_by_other = false;
                continue;
            }
            match self.api.get(&self.name).await {
                Ok(lease) => {
                    let holder = lease.spec.and_then(|s| s.holder_identity);
                    match holder.as_deref() {
                        None | Some("") if held_by_other => return,
                        None | Some("") => {}
                        Some(h) => held_by_other = h != self.identity,
                    }
                }
                // Deleted: the manager would wait on it forever; a new one creates it again.
                Err(e) if is_not_found(&e) => return,
                Err(e) => tracing::debug!(error = %e, "reading the lease failed"),
            }
        }
    }

    /// Forwards the manager's channel to `tx`, turning it `false` while the lease cannot be
    /// confirmed to outlast the next check.
    async fn forward(&self, mut manager: watch::Receiver<bool>, tx: &watch::Sender<bool>) {
        let mut valid_until = Instant::now();
        loop {
            let held = *manager.borrow_and_update();
            let leading = held && Instant::now() + self.margin() < valid_until;
            let was = tx.send_replace(leading);
            if was && !leading && held {
                tracing::warn!(
                    lease = %self.name,
                    "cannot confirm the lease before it expires: stepping down"
                );
            }
            if !held {
                if manager.changed().await.is_err() {
                    tx.send_replace(false);
                    return;
                }
                if *manager.borrow() {
                    // The manager has just acquired (and read back) the lease.
                    valid_until = Instant::now() + self.duration.saturating_sub(self.grace);
                }
                continue;
            }
            let mut next_check = Instant::now() + self.poll();
            if leading {
                next_check = next_check.min(valid_until - self.margin());
            }
            tokio::select! {
                changed = manager.changed() => {
                    if changed.is_err() {
                        tx.send_replace(false);
                        return;
                    }
                }
                () = tokio::time::sleep_until(next_check) => {
                    match self.held_until().await {
                        Ok(Some(until)) => valid_until = until,
                        Ok(None) => valid_until = Instant::now(),
                        Err(e) if is_not_found(&e) => {
                            // The Lease was deleted: the manager would retry renewing it forever.
                            tx.send_replace(false);
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, lease = %self.name, "reading the lease failed"),
                    }
                }
            }
        }
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
