//! The admin listener: `/metrics`, `/healthz` and `/readyz` on one port.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use jiff::Timestamp;
use tokio::net::TcpListener;

use crate::metrics::SharedMetrics;
pub use crate::readiness::Readiness;

/// Shared state of the admin handlers.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The metrics to expose.
    pub metrics: SharedMetrics,
    /// The readiness to report.
    pub readiness: Arc<Readiness>,
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(Timestamp::now()),
    )
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Serves the admin routes on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_without_leader_election_waits_for_the_watches() {
        let r = Readiness::new(false);
        assert!(!r.is_ready());
        r.set_watches_synced(true);
        assert!(r.is_ready());
    }

    #[test]
    fn a_follower_is_ready_to_follow_and_a_leader_once_synced() {
        let r = Readiness::new(true);
        assert!(!r.is_ready());
        r.set_lease_manager_running(true);
        assert!(r.is_ready(), "follower");
        r.set_leading(true);
        assert!(!r.is_ready(), "leader before its watches synced");
        r.set_watches_synced(true);
        assert!(r.is_ready());
    }
}
