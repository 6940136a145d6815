//! The `ecs-sim` command line.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::credential::Credential;
use super::data;
use super::errors::SimError;
use super::faults::{Faults, MalformedKind};
use super::imds::{self, ImdsConfig};
use super::server::{SimHandle, start};
use super::state::SimConfig;
use super::sts::StsConfig;

/// `imagepipeline-operator ecs-sim`: a local ECS endpoint for `DescribeImagePipelines`.
///
/// Without `--data` or `--generate` it serves the built-in sample (8 pipelines). Without
/// `--credential` it accepts the test AccessKey `LTAI5tSimulatorTestKey01` with secret
/// `SimulatorTestSecretDoNotUseInProd`. The same listener answers STS `AssumeRoleWithOIDC` and
/// the instance metadata paths under `/latest/`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on; port 0 picks a free port (printed on the first stdout line).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// JSON array of pipelines (API item shape plus a `RegionId`); re-read on SIGHUP.
    #[arg(long, value_name = "FILE", conflicts_with = "generate")]
    pub data: Option<PathBuf>,
    /// Serve N generated pipelines instead of a file.
    #[arg(long, value_name = "N")]
    pub generate: Option<usize>,
    /// Seed of `--generate` (same seed, same pipelines).
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// An accepted AccessKey, repeatable: `AK:SECRET` or `AK:SECRET:SECURITYTOKEN`.
    #[arg(long = "credential", value_name = "AK:SECRET[:SECURITYTOKEN]")]
    pub credentials: Vec<Credential>,
    /// Every Nth call answers 400 Throttling.User (0: never).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub throttle_every: u64,
    /// Every Nth call answers 500 InternalError (0: never).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub fail_every: u64,
    /// Every Nth call that would succeed answers a malformed body of --malformed-kind
    /// (0: never).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub malformed_every: u64,
    /// What --malformed-every answers: a truncated body, a 502 HTML page, an empty 200, the
    /// page with odd types, a 200 error object, or a 50 MiB body.
    #[arg(long, value_enum, value_name = "KIND", default_value_t = MalformedKind::Truncated)]
    pub malformed_kind: MalformedKind,
    /// Seeded share of calls, in percent, answering 400 Throttling.User.
    #[arg(long, value_name = "P", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub throttle_percent: u8,
    /// Seeded share of calls, in percent, answering 500 InternalError.
    #[arg(long, value_name = "P", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub fail_percent: u8,
    /// Seed of --throttle-percent, --fail-percent and --retry-after-percent.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub fault_seed: u64,
    /// Every Nth call carrying a NextToken answers 403 Invalid.NextToken (1: always; 0: never).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub invalid_token_every: u64,
    /// Every Nth call waits --slow-ms more before answering (0: never).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub slow_every: u64,
    /// The extra delay of --slow-every calls, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub slow_ms: u64,
    /// Delay before every answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Add `x-acs-retry-after: MS` to throttling answers.
    #[arg(long, value_name = "MS")]
    pub retry_after_ms: Option<u64>,
    /// Only this seeded share of throttling answers, in percent, carries --retry-after-ms
    /// (default: all).
    #[arg(long, value_name = "P", value_parser = clap::value_parser!(u8).range(0..=100))]
    pub retry_after_percent: Option<u8>,
    /// Append one JSON line per request to FILE.
    #[arg(long = "log", value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// STS: a role that exists, repeatable (default: any `acs:ram::<account>:role/<name>`).
    #[arg(long = "oidc-role-arn", value_name = "ARN")]
    pub oidc_role_arns: Vec<String>,
    /// STS: a registered OIDC provider, repeatable (default: any).
    #[arg(long = "oidc-provider-arn", value_name = "ARN")]
    pub oidc_provider_arns: Vec<String>,
    /// STS: the only OIDC token accepted (default: any non-empty token).
    #[arg(long, value_name = "TOKEN")]
    pub oidc_token: Option<String>,
    /// STS: lifetime of the credentials issued, in seconds; may be below STS's 900 s minimum
    /// (default: the requested `DurationSeconds`).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..))]
    pub sts_lifetime_secs: Option<u64>,
    /// STS: every Nth `AssumeRoleWithOIDC` answers 503 ServiceUnavailable (1: always; 0: never).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub sts_fail_every: u64,
    /// Metadata service: the instance's RAM role ("" for none).
    #[arg(long, value_name = "NAME", default_value = imds::DEFAULT_ROLE)]
    pub imds_role: String,
    /// Metadata service: hardened mode, every read needs an IMDSv2 session token.
    #[arg(long, conflicts_with = "imds_v2_disabled")]
    pub imds_v2_only: bool,
    /// Metadata service: no IMDSv2, the token request answers 404 (clients fall back to v1).
    #[arg(long)]
    pub imds_v2_disabled: bool,
    /// Metadata service: lifetime of the role credentials, in seconds.
    #[arg(long, value_name = "S", default_value_t = imds::DEFAULT_LIFETIME.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..))]
    pub imds_lifetime_secs: u64,
}

impl SimArgs {
    /// The library configuration these flags describe (items loaded or generated).
    pub fn to_config(&self) -> Result<SimConfig, SimError> {
        let items = match (&self.data, self.generate) {
            (Some(path), _) => data::load(path)?,
            (None, Some(n)) => data::generate(n, self.seed),
            (None, None) => data::sample_items(),
        };
        let credentials = if self.credentials.is_empty() {
            vec![Credential::default_test()]
        } else {
            self.credentials.clone()
        };
        Ok(SimConfig {
            listen: self.listen,
            items,
            credentials,
            faults: Faults {
                throttle_every: self.throttle_every,
                fail_every: self.fail_every,
                malformed_every: self.malformed_every,
                malformed_kind: self.malformed_kind,
                latency_ms: self.latency_ms,
                retry_after_ms: self.retry_after_ms,
                retry_after_percent: self.retry_after_percent,
                throttle_percent: self.throttle_percent,
                fail_percent: self.fail_percent,
                seed: self.fault_seed,
                invalid_token_every: self.invalid_token_every,
                slow_every: self.slow_every,
                slow_ms: self.slow_ms,
                sts_fail_every: self.sts_fail_every,
            },
            log_file: self.log.clone(),
            sts: StsConfig {
                role_arns: self.oidc_role_arns.clone(),
                oidc_provider_arns: self.oidc_provider_arns.clone(),
                oidc_token: self.oidc_token.clone(),
                lifetime: self.sts_lifetime_secs.map(Duration::from_secs),
            },
            imds: ImdsConfig {
                role_name: self.imds_role.clone(),
                v2_only: self.imds_v2_only,
                v2_disabled: self.imds_v2_disabled,
                lifetime: Duration::from_secs(self.imds_lifetime_secs),
            },
        })
    }
}

/// The first line `ecs-sim` prints, exactly: `listening on http://127.0.0.1:PORT`.
pub fn listening_line(handle: &SimHandle) -> String {
    format!("listening on {}", handle.url())
}

/// Runs the simulator until SIGINT or SIGTERM.
pub async fn run_cli(args: SimArgs) -> Result<(), SimError> {
    let config = args.to_config()?;
    let ids: Vec<String> = config
        .credentials
        .iter()
        .map(|c| c.access_key_id.clone())
        .collect();
    let handle = start(config).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", listening_line(&handle))?;
        out.flush()?;
    }
    tracing::info!(url = %handle.url(), credentials = ?ids, "ecs-sim ready");
    if let Some(path) = args.data.clone() {
        reload_data_on_sighup(&handle, path);
    }
    wait_for_stop().await;
    handle.shutdown().await;
    Ok(())
}

/// Re-reads `path` into the running simulator on every SIGHUP (a broken file keeps the
/// previous items and logs why). Needs a Tokio runtime; does nothing off Unix.
#[cfg(unix)]
pub fn reload_data_on_sighup(handle: &SimHandle, path: PathBuf) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; --data will not be re-read");
        return;
    };
    let setter = handle.item_setter();
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match data::load(&path) {
                Ok(items) => {
                    tracing::info!(items = items.len(), "reloaded --data on SIGHUP");
                    setter(items);
                }
                Err(e) => tracing::error!(error = %e, "SIGHUP: keeping the previous items"),
            }
        }
    });
}

/// Re-reads `path` on SIGHUP: there is no SIGHUP off Unix.
#[cfg(not(unix))]
pub fn reload_data_on_sighup(_handle: &SimHandle, _path: PathBuf) {}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn flags_become_the_configuration() {
        let cli = Cli::try_parse_from([
            "ecs-sim",
            "--generate",
            "25",
            "--seed",
            "9",
            "--credential",
            "AK1:SK1",
            "--credential",
            "STS.x:SK2:tok",
            "--throttle-every",
            "3",
            "--retry-after-ms",
            "1500",
        ])
        .expect("valid flags");
        let config = cli.sim.to_config().expect("config");
        assert_eq!(config.items, data::generate(25, 9));
        assert_eq!(config.credentials.len(), 2);
        assert_eq!(config.credentials[1].security_token.as_deref(), Some("tok"));
        assert_eq!(config.faults.throttle_every, 3);
        assert_eq!(config.faults.retry_after_ms, Some(1500));
        assert_eq!(config.listen.to_string(), "127.0.0.1:0");
    }

    #[test]
    fn fault_flags_become_the_faults() {
        let faults = Cli::try_parse_from([
            "ecs-sim",
            "--malformed-every",
            "4",
            "--malformed-kind",
            "wrong-types",
            "--throttle-percent",
            "30",
            "--fail-percent",
            "10",
            "--fault-seed",
            "42",
            "--retry-after-ms",
            "200",
            "--retry-after-percent",
            "50",
            "--invalid-token-every",
            "3",
            "--slow-every",
            "5",
            "--slow-ms",
            "2000",
        ])
        .expect("valid flags")
        .sim
        .to_config()
        .expect("config")
        .faults;
        assert_eq!(
            faults,
            Faults {
                malformed_every: 4,
                malformed_kind: MalformedKind::WrongTypes,
                throttle_percent: 30,
                fail_percent: 10,
                seed: 42,
                retry_after_ms: Some(200),
                retry_after_percent: Some(50),
                invalid_token_every: 3,
                slow_every: 5,
                slow_ms: 2000,
                ..Faults::default()
            }
        );
        for kind in [
            "truncated",
            "html",
            "empty",
            "wrong-types",
            "error200",
            "huge",
        ] {
            assert!(
                Cli::try_parse_from(["ecs-sim", "--malformed-kind", kind]).is_ok(),
                "{kind}"
            );
        }
        for bad in [
            &["ecs-sim", "--throttle-percent", "101"][..],
            &["ecs-sim", "--malformed-kind", "bogus"][..],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults_are_the_sample_and_the_test_credential() {
        let config = Cli::try_parse_from(["ecs-sim"])
            .expect("valid")
            .sim
            .to_config()
            .expect("config");
        assert_eq!(config.items, data::sample_items());
        assert_eq!(config.credentials, vec![Credential::default_test()]);
        assert!(Cli::try_parse_from(["ecs-sim", "--credential", "nosecret"]).is_err());
        assert!(Cli::try_parse_from(["ecs-sim", "--data", "x", "--generate", "1"]).is_err());
    }

    #[test]
    fn sts_and_metadata_flags_become_their_configuration() {
        let config = Cli::try_parse_from([
            "ecs-sim",
            "--oidc-role-arn",
            "acs:ram::1:role/a",
            "--oidc-provider-arn",
            "acs:ram::1:oidc-provider/p",
            "--oidc-token",
            "tok",
            "--sts-lifetime-secs",
            "5",
            "--sts-fail-every",
            "1",
            "--imds-role",
            "node",
            "--imds-v2-only",
            "--imds-lifetime-secs",
            "60",
        ])
        .expect("valid flags")
        .sim
        .to_config()
        .expect("config");
        assert_eq!(config.sts.role_arns, ["acs:ram::1:role/a"]);
        assert_eq!(config.sts.oidc_token.as_deref(), Some("tok"));
        assert_eq!(config.sts.lifetime, Some(Duration::from_secs(5)));
        assert_eq!(config.faults.sts_fail_every, 1);
        assert_eq!(config.imds.role_name, "node");
        assert!(config.imds.v2_only && !config.imds.v2_disabled);
        assert_eq!(config.imds.lifetime, Duration::from_secs(60));
        let defaults = Cli::try_parse_from(["ecs-sim"]).expect("valid").sim;
        let defaults = defaults.to_config().expect("config");
        assert_eq!(defaults.sts, StsConfig::default());
        assert_eq!(defaults.imds, ImdsConfig::default());
        for bad in [
            &["ecs-sim", "--imds-v2-only", "--imds-v2-disabled"][..],
            &["ecs-sim", "--sts-lifetime-secs", "0"][..],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn the_first_line_names_the_bound_url() {
        let handle = start(SimConfig::default()).await.expect("start");
        let line = listening_line(&handle);
        let port = handle.addr().port();
        assert_eq!(line, format!("listening on http://127.0.0.1:{port}"));
        handle.shutdown().await;
    }
}
