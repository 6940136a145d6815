//! The `imagepipeline-operator` binary: parses the command line and dispatches. No logic here.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use imagepipeline_operator::cli::{self, CliError};
use imagepipeline_operator::telemetry::{self, LogFormat};
use imagepipeline_operator::{controller, crd, sim};

/// Mirrors Alibaba Cloud ECS image pipelines (image templates) into Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "imagepipeline-operator", version, about)]
struct Cli {
    /// Log line format.
    #[arg(long, global = true, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level or tracing filter, e.g. `info` or `imagepipeline_operator=debug`.
    #[arg(long, global = true, env = "LOG_LEVEL", default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller (in-cluster config or KUBECONFIG).
    Run(controller::RunArgs),
    /// Print both CRDs as YAML.
    Crds,
    /// Start the built-in ECS simulator with sample data and show what a query would mirror.
    Demo(cli::demo::DemoArgs),
    /// List pipelines once, without a cluster, and print the ImagePipeline manifests.
    Export(cli::export::ExportArgs),
    /// Serve a local simulator of the ECS DescribeImagePipelines endpoint.
    EcsSim(sim::SimArgs),
}

/// mimalloc instead of the system allocator: glibc keeps the memory freed after a sync (the
/// listing, the decoded watch pages) in its per-thread arenas, mimalloc returns it to the
/// system. Measured on a real API server in BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), CliError> {
    let quiet = matches!(
        cli.command,
        Command::Demo(_) | Command::Export(_) | Command::Crds
    );
    let level = if quiet && cli.log_level == "info" {
        "warn"
    } else {
        &cli.log_level
    };
    telemetry::init(cli.log_format, level).map_err(CliError::Logging)?;
    match cli.command {
        Command::Run(args) => cli::run::run(args).await,
        Command::Crds => {
            print!("{}", crd::crds_yaml());
            Ok(())
        }
        Command::Demo(args) => cli::demo::demo(args).await,
        Command::Export(args) => {
            let provider = cli::export::ambient_provider(&args)?;
            cli::export::export(args, provider).await
        }
        Command::EcsSim(args) => Ok(sim::run_cli(args).await?),
    }
}
