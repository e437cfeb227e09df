//! What stops a run before or while it goes, and the exit code for each kind.
//!
//! A row's failure is not here: it is data, written to the results. These are
//! the conditions that end the whole run.

/// How a command ended. The one place an exit code is decided: every
/// command returns one of these, and `main` turns it into the process's
/// exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Refused for its flags, files or input: nothing was sent (exit 2).
    Refused,
    /// Stopped before its end, by a signal or because it could not go on.
    Stopped(Stop),
    /// Went to the end; `rows_failed` when a row ended `failed`, `invalid`
    /// or `mismatch` (exit 1), exit 0 otherwise.
    Finished { rows_failed: bool },
}

/// Why a command stopped, as far as its exit code tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT or SIGTERM (exit 130).
    Interrupted,
    /// The API rejected the token, a threshold was crossed, or a file could
    /// not be read or written (exit 3).
    Aborted,
}

impl Ending {
    /// Went to the end and every row succeeded.
    pub const CLEAN: Ending = Ending::Finished { rows_failed: false };

    /// The process exit code, as the contract names them.
    pub fn exit_code(self) -> u8 {
        match self {
            Ending::Finished { rows_failed: false } => 0,
            Ending::Finished { rows_failed: true } => 1,
            Ending::Refused => 2,
            Ending::Stopped(Stop::Aborted) => 3,
            Ending::Stopped(Stop::Interrupted) => 130,
        }
    }

    /// Leaves the process at once, as interrupted: a second signal, or one
    /// before anything started.
    pub fn exit_interrupted() -> ! {
        std::process::exit(i32::from(Ending::Stopped(Stop::Interrupted).exit_code()))
    }
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
    /// How a command that met this ended.
    pub fn ending(&self) -> Ending {
        match self {
            Fatal::Usage(_) | Fatal::Input(_) => Ending::Refused,
            Fatal::Unauthorized(_) | Fatal::Aborted(_) => Ending::Stopped(Stop::Aborted),
            Fatal::Interrupted => Ending::Stopped(Stop::Interrupted),
        }
    }
}

/// One line for a failed write; a full disk is named as such.
pub fn describe_write_error(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
        format!("the disk is full ({e})")
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ending_has_the_contract_s_exit_code() {
        assert_eq!(Ending::CLEAN.exit_code(), 0);
        assert_eq!(Ending::Finished { rows_failed: true }.exit_code(), 1);
        assert_eq!(Fatal::Usage(String::new()).ending().exit_code(), 2);
        assert_eq!(Fatal::Input(String::new()).ending().exit_code(), 2);
        assert_eq!(Fatal::Unauthorized(String::new()).ending().exit_code(), 3);
        assert_eq!(Fatal::Aborted(String::new()).ending().exit_code(), 3);
        assert_eq!(Fatal::Interrupted.ending().exit_code(), 130);
    }
}
