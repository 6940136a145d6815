//! The `ecs-sim` command's behaviour that needs a process of its own: `--data` re-read on
//! SIGHUP. (The first stdout line is covered by the unit test of `listening_line`.)
#![cfg(unix)]

mod sim_support;

use std::time::Duration;

use imagepipeline_operator::sim::{SimArgs, reload_data_on_sighup, start};
use serde_json::json;
use sim_support::*;

#[derive(Debug, clap::Parser)]
struct Cli {
    #[command(flatten)]
    sim: SimArgs,
}

async fn total(url: &str) -> u64 {
    call(url, &params(&[("RegionId", "cn-hangzhou")]))
        .await
        .json()["TotalCount"]
        .as_u64()
        .expect("count")
}

#[tokio::test]
async fn sighup_rereads_the_data_file() {
    use clap::Parser;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("items.json");
    let one = json!([{"ImagePipelineId": "ip-a", "Name": "a1", "RegionId": "cn-hangzhou"}]);
    std::fs::write(&path, one.to_string()).expect("write");
    let path_arg = path.display().to_string();
    let cli = Cli::try_parse_from(["ecs-sim", "--data", path_arg.as_str()]).expect("flags");
    let sim = start(cli.sim.to_config().expect("config"))
        .await
        .expect("start");
    reload_data_on_sighup(&sim, path.clone());
    assert_eq!(total(&sim.url()).await, 1);

    let three = json!([
        {"ImagePipelineId": "ip-a", "Name": "a1", "RegionId": "cn-hangzhou"},
        {"ImagePipelineId": "ip-b", "Name": "b1", "RegionId": "cn-hangzhou"},
        {"ImagePipelineId": "ip-c", "Name": "c1", "RegionId": "cn-hangzhou"}
    ]);
    std::fs::write(&path, three.to_string()).expect("write");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let mut seen = 0;
    for _ in 0..50 {
        seen = total(&sim.url()).await;
        if seen == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, 3);

    // A broken file keeps what was served.
    std::fs::write(&path, "not json").expect("write");
    std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("kill runs");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(total(&sim.url()).await, 3);
    sim.shutdown().await;
}
