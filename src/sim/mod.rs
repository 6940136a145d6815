//! `ecs-sim`: a local simulator of the ECS endpoint for `DescribeImagePipelines`.
//!
//! It verifies signatures as the service does (RPC v1 `HMAC-SHA1` with parameters in the query,
//! a form body or both; V3 `ACS3-HMAC-SHA256`), filters and pages like it, answers the real error
//! codes, and injects throttling, 5xx, latency and garbled bodies on demand. Tests, benchmarks
//! and the demo start it in-process with [`start`]; the binary runs it with [`run_cli`].
//!
//! Admin endpoints (unsigned): `PUT|GET /_sim/items`, `GET /_sim/stats`, `PUT|GET /_sim/faults`.

mod admin;
mod args;
mod auth;
mod credential;
mod data;
mod errors;
mod faults;
mod format;
mod log;
mod paging;
mod pipelines;
mod request;
mod router;
mod server;
mod store;
mod v1;
mod v3;
#[cfg(test)]
mod v3_tests;

pub use args::{SimArgs, listening_line, reload_data_on_sighup, run_cli};
pub use credential::{Credential, DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET};
pub use data::{generate, load as load_items, sample_items};
pub use errors::SimError;
pub use faults::Faults;
pub use log::LoggedRequest;
pub use server::{SimConfig, SimHandle, start};
