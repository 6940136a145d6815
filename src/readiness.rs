//! What `/readyz` reports on: whether the watches have synced and, with leader election,
//! whether this replica can follow or lead. The controller and the leader election set it; the
//! admin listener reads it.

use std::sync::atomic::{AtomicBool, Ordering};

/// What `/readyz` reports on.
#[derive(Debug, Default)]
pub struct Readiness {
    leader_election: bool,
    lease_manager_running: AtomicBool,
    leading: AtomicBool,
    watches_synced: AtomicBool,
}

impl Readiness {
    /// Readiness of a replica, with or without leader election.
    pub fn new(leader_election: bool) -> Self {
        Self {
            leader_election,
            ..Self::default()
        }
    }

    /// The controller's watches have listed everything once (or were stopped: `false`).
    pub fn set_watches_synced(&self, synced: bool) {
        self.watches_synced.store(synced, Ordering::SeqCst);
    }

    /// The lease manager is running (this replica can follow or lead).
    pub fn set_lease_manager_running(&self, running: bool) {
        self.lease_manager_running.store(running, Ordering::SeqCst);
    }

    /// This replica holds the lease.
    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::SeqCst);
    }

    /// Ready: without leader election, once the watches synced; with it, a follower whose lease
    /// manager runs is ready to take over, and a leader once its watches synced.
    pub fn is_ready(&self) -> bool {
        let synced = self.watches_synced.load(Ordering::SeqCst);
        if !self.leader_election {
            return synced;
        }
        self.lease_manager_running.load(Ordering::SeqCst)
            && (!self.leading.load(Ordering::SeqCst) || synced)
    }
}
