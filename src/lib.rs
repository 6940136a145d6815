//! imagepipeline-operator: mirrors Alibaba Cloud ECS image pipelines into Kubernetes.
#![forbid(unsafe_code)]

pub mod controller;
pub mod crd;
pub mod ecs;
pub mod sim;
pub mod telemetry;
