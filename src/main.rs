//! The `imagepipeline-operator` binary: parses the command line and dispatches. No logic here.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use imagepipeline_operator::cli::{self, CliError};
use imagepipeline_operator::telemetry::{self, LogFormat};
use imagepipeline_operator::{controller, crd, sim};

/// The system allocator, keeping a few freed large blocks (hyper's per-page read buffers) for
/// reuse instead of mapping a fresh one per page: see the `spare-alloc` crate.
#[global_allocator]
static ALLOCATOR: spare_alloc::SpareBlocks = spare_alloc::SpareBlocks::new();

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match runtime_for(&cli.command) {
        Ok(runtime) => runtime.block_on(dispatch(cli)),
        Err(e) => Err(CliError::Io(e)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime a command runs on. The one-shot commands run on the calling thread: a listing
/// gains nothing from handing each page between threads (BENCHMARKS.md, "export"). `run` takes
/// `--worker-threads`; the simulator and the demo serve many connections at once, one thread
/// per core. Every count is set here, so tokio never reads (and panics on a bad)
/// `TOKIO_WORKER_THREADS`.
fn runtime_for(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    let worker_threads = match command {
        Command::Export(_) | Command::Crds => None,
        Command::Run(args) => Some(usize::from(args.worker_threads)),
        Command::Demo(_) | Command::EcsSim(_) => {
            Some(std::thread::available_parallelism().map_or(1, |n| n.get()))
        }
    };
    let mut builder = match worker_threads {
        None => tokio::runtime::Builder::new_current_thread(),
        Some(threads) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
    };
    builder.enable_all().build()
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
        Command::Run(args) => {
            trim_heap_periodically();
            cli::run::run(args).await
        }
        Command::Crds => cli::print_out(&crd::crds_yaml()),
        Command::Demo(args) => cli::demo::demo(args).await,
        Command::Export(args) => {
            let provider = cli::export::ambient_provider(&args)?;
            cli::export::export(args, provider).await
        }
        Command::EcsSim(args) => Ok(sim::run_cli(args).await?),
    }
}

/// How often the controller hands freed heap memory back to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const HEAP_TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// glibc's malloc gives freed memory back to the system only from the top of its heap: after a
/// sync, the pages of the listing and of the decoded watch pages stay resident between the
/// small long-lived records allocated meanwhile. `malloc_trim` releases them (BENCHMARKS.md:
/// mimalloc and glibc's arena limits measured no better). musl (the container image's static
/// build) has no such call; its allocator is not measured here.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap_periodically() {
    tokio::spawn(async {
        let mut every = tokio::time::interval(HEAP_TRIM_EVERY);
        loop {
            every.tick().await;
            // SAFETY: malloc_trim takes glibc's own arena locks and only returns free pages to
            // the kernel; it touches no memory Rust owns.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    });
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap_periodically() {}
