//! imagepipeline-operator: mirrors Alibaba Cloud ECS image pipelines into Kubernetes.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod ecs;
pub mod leader;
pub mod metrics;
pub mod sim;
pub mod telemetry;
