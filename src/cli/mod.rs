//! The command line: clap definitions, exit codes, and the headless commands. Output goes to the
//! given writer (stdout in `main`), errors come back as `CliError` with their exit code.

pub mod args;
pub mod commands;
pub mod demo;
pub mod import;
pub mod invoke;
pub mod output;
pub mod traces;

pub use args::{Cli, Command};

/// Exit codes, documented in `--help` and README.
pub mod exit {
    pub const OK: u8 = 0;
    /// Bad input or usage.
    pub const BAD_INPUT: u8 = 2;
    /// Conflict: already decided, expired, or not allowed by policy.
    pub const CONFLICT: u8 = 3;
    /// The store is unavailable.
    pub const UNAVAILABLE: u8 = 4;
}

/// A failed command: what to tell the user, and the exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self {
            code: exit::BAD_INPUT,
            message: message.into(),
        }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self {
            code: exit::CONFLICT,
            message: message.into(),
        }
    }

    /// Writing the command's output failed. A reader that went away (`agentdeck pending | head`)
    /// is not a failure: the command stops quietly with success, as `git log | head` does.
    pub fn output(e: &std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Self {
                code: exit::OK,
                message: String::new(),
            }
        } else {
            Self::unavailable(format!("cannot write output: {e}"))
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            code: exit::UNAVAILABLE,
            message: message.into(),
        }
    }
}

impl From<crate::store::StoreError> for CliError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError as E;
        let code = match &e {
            E::Unavailable(_) | E::Corrupt(_) => exit::UNAVAILABLE,
            E::Refused(r) if r.is_bad_input() => exit::BAD_INPUT,
            E::Refused(_) | E::Duplicate(_) | E::LeaseLost(_) => exit::CONFLICT,
            E::NotFound(_) | E::Ambiguous { .. } => exit::BAD_INPUT,
        };
        Self {
            code,
            message: e.to_string(),
        }
    }
}

impl From<crate::config::ConfigError> for CliError {
    fn from(e: crate::config::ConfigError) -> Self {
        Self::bad_input(e.to_string())
    }
}
