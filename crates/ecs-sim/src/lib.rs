//! `ecs-sim`: a local simulator of the ECS endpoint for `DescribeImagePipelines`.
//!
//! It verifies signatures as the service does (RPC v1 `HMAC-SHA1` with parameters in the query,
//! a form body or both; V3 `ACS3-HMAC-SHA256`), filters and pages like it, answers the real error
//! codes, and injects faults on demand (see [`Faults`]): throttling and 5xx every Nth call or
//! as a seeded percentage, `x-acs-retry-after`, latency and stalls, `Invalid.NextToken`, and
//! malformed answers (truncated, HTML, empty, odd types, a 200 error, a 50 MiB body). Tests,
//! benchmarks and the demo start it in-process with [`start`]; the binary runs it with
//! [`run_cli`].
//!
//! The same listener also answers STS `AssumeRoleWithOIDC` (by `Action`, see [`StsConfig`]) and
//! the instance metadata paths the ECS RAM-role credentials come from (`/latest/...`, see
//! [`ImdsConfig`]); the credentials both hand out are accepted by the ECS endpoint until they
//! expire.
//!
//! Admin endpoints (unsigned): `PUT|GET /_sim/items`, `GET /_sim/stats`, `PUT|GET /_sim/faults`.
#![forbid(unsafe_code)]

mod admin;
pub mod api;
mod args;
mod auth;
mod claims;
mod credential;
mod data;
mod encoding;
mod errors;
mod faults;
mod format;
mod imds;
mod imds_routes;
mod log;
mod paging;
mod pipelines;
mod request;
mod router;
mod server;
mod state;
mod store;
mod sts;
mod sts_actions;
#[cfg(test)]
mod sts_tests;
mod v1;
mod v3;
#[cfg(test)]
mod v3_tests;

pub use args::{SimArgs, listening_line, reload_data_on_sighup, run_cli};
pub use credential::{Credential, DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET};
pub use data::{generate, load as load_items, sample_items};
pub use errors::SimError;
pub use faults::{Faults, HUGE_BODY_BYTES, MalformedKind};
pub use imds::{ImdsConfig, ImdsStats};
pub use log::LoggedRequest;
pub use server::{SimHandle, start};
pub use state::SimConfig;
pub use sts::{StsConfig, token_fingerprint};
