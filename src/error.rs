//! What stops a run before or while it goes, and the exit code for each kind.
//!
//! A row's failure is not here: it is data, written to the results. These are
//! the conditions that end the whole run.

/// Exit codes, as the contract names them.
pub mod exit {
    pub const OK: u8 = 0;
    pub const ROWS_FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const ABORTED: u8 = 3;
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    /// A flag, setting or file the user must fix; nothing was sent.
    #[error("{0}")]
    Usage(String),
    /// The input file or its header cannot be used; nothing was sent.
    #[error("{0}")]
    Input(String),
    /// The API rejected the token before anything was changed.
    #[error("{0}")]
    Unauthorized(String),
    /// SIGINT or SIGTERM before anything was sent.
    #[error("interrupted before anything was sent: nothing to resume; run the command again")]
    Interrupted,
    /// The run could not go on (for example the results file could not be written).
    #[error("{0}")]
    Aborted(String),
}

impl Fatal {
    pub fn exit_code(&self) -> u8 {
        match self {
            Fatal::Usage(_) | Fatal::Input(_) => exit::USAGE,
            Fatal::Unauthorized(_) | Fatal::Aborted(_) => exit::ABORTED,
            Fatal::Interrupted => exit::INTERRUPTED,
        }
    }
}
