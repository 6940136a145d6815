//! The ECS simulator on a runtime of its own (so that logs captured on the test's thread are
//! the operator's only), and fixtures for it.

use imagepipeline_operator::sim::{SimConfig, SimHandle, start};
use serde_json::{Value, json};

/// A simulator running on its own runtime thread.
#[derive(Debug)]
pub struct Sim {
    pub handle: SimHandle,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Sim {
    pub async fn start(config: SimConfig) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("sim runtime");
        let handle = runtime
            .spawn(start(config))
            .await
            .expect("sim task")
            .expect("simulator starts");
        Self {
            handle,
            runtime: Some(runtime),
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// `n` pipelines in cn-hangzhou, tagged `team=<team>`, IDs `ip-<team>-<i>`.
pub fn pipelines(team: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "ImagePipelineId": format!("ip-{team}{i:04}"),
                "Name": format!("{team}-pipeline-{i}"),
                "RegionId": "cn-hangzhou",
                "BaseImageType": "IMAGE_FAMILY",
                "BaseImage": "acs:ubuntu_22_04_x64",
                "InstanceType": "ecs.g7.large",
                "SystemDiskSize": 40,
                "CreationTime": "2024-03-01T00:00:00Z",
                "Tags": {"Tag": [{"TagKey": "team", "TagValue": team}]},
            })
        })
        .collect()
}
