//! The command line: one binary, several subcommands. `main.rs` only parses and dispatches.

pub mod demo;
pub mod export;
pub mod ids;
pub mod manifest;
pub mod output;
pub mod run;
pub mod text;
pub mod yaml;

use crate::ecs::filter::FilterError;
use crate::ecs::{EcsError, ListingError};

/// Everything a subcommand can fail with; printed to stderr, exit status 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag describes a filter the API would refuse.
    #[error("invalid filter: {0}")]
    Filter(#[from] FilterError),
    /// The ECS client could not be set up.
    #[error("{0}")]
    Ecs(Box<EcsError>),
    /// The listing failed (the message carries the API's Code, Message and RequestId).
    #[error("{0}")]
    Listing(Box<ListingError>),
    /// Output could not be rendered.
    #[error("{0}")]
    Render(#[from] output::RenderError),
    /// Writing to stdout failed.
    #[error("writing output: {0}")]
    Io(std::io::Error),
    /// The simulator failed.
    #[error("simulator: {0}")]
    Sim(#[from] crate::sim::SimError),
    /// Credentials could not be set up.
    #[error("credentials: {0}")]
    Credentials(String),
    /// The controller failed.
    #[error("{0}")]
    Controller(#[from] crate::controller::ControllerError),
    /// The admin listener or leader election could not start.
    #[error("{0}")]
    Admin(String),
    /// Logging could not be set up.
    #[error("logging: {0}")]
    Logging(String),
}

impl From<EcsError> for CliError {
    fn from(e: EcsError) -> Self {
        CliError::Ecs(Box::new(e))
    }
}

/// Writes `text` to stdout. A closed pipe (`demo | head`) is an error to report, where
/// `print!` would panic.
pub fn print_out(text: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(CliError::Io)
}

impl From<ListingError> for CliError {
    fn from(e: ListingError) -> Self {
        CliError::Listing(Box::new(e))
    }
}
