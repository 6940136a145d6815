//! imagepipeline-operator: mirrors Alibaba Cloud ECS image pipelines into Kubernetes.
#![forbid(unsafe_code)]

pub mod crd;
pub mod ecs;
