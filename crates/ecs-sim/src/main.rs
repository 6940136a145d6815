//! The `ecs-sim` binary: parses the command line, sets up logging and serves the simulator.

use std::process::ExitCode;

use clap::Parser;

/// A local simulator of the Alibaba Cloud ECS DescribeImagePipelines endpoint.
#[derive(Debug, Parser)]
#[command(name = "ecs-sim", version, about)]
struct Cli {
    #[command(flatten)]
    sim: ecs_sim::SimArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match ecs_sim::run_cli(cli.sim).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
