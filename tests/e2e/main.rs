//! End-to-end tests on a real Kubernetes API server (the `../shared/k8s` kit in CI, or kind,
//! k3d, ...), with the simulator and the operator run as processes from the built binary: the
//! server needs no kubelet.
//!
//! ```text
//! E2E_KUBECONFIG=~/.kube/config cargo test --test e2e -- --test-threads=1
//! ```
//!
//! Without `E2E_KUBECONFIG` every test prints a notice and passes; with `E2E_REQUIRE_CLUSTER=1`
//! a missing `E2E_KUBECONFIG` fails them instead (CI, where `.ci/run` starts the API server).
//! Each test uses a fresh namespace and deletes it afterwards; the CRDs under `crds/` are applied
//! first. Logs of the operators and the simulators go to `target/e2e-logs/`.

mod argocd_health;
mod chart;
mod disturbances;
mod events;
mod leader_election;
mod metrics;
mod mirroring;
mod pods;
mod secret_rotation;
mod sharding;
mod support;
mod triggers;
