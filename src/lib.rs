//! imagepipeline-operator: mirrors Alibaba Cloud ECS image pipelines into Kubernetes.
#![deny(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod leader;
pub mod metrics;
pub mod readiness;
pub mod telemetry;

/// The ECS simulator (the `ecs-sim` crate).
pub use ecs_sim as sim;
/// The ECS client (the `imagepipeline-ecs` crate).
pub use imagepipeline_ecs as ecs;
