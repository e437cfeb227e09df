//! How a command ends, and the exit code for each way; what stops a run
//! before or while it goes.
//!
//! A row's failure is not here: it is data, written to the results. These are
//! the conditions that end the whole run.

/// How a command ended: it went to its end (`Ok`), or it was refused or
/// stopped (`Err`). Every command returns one, so does `crate::run`, and
/// `main` turns it into the process's exit code with [`exit_code`].
pub type Ending = Result<Finished, Unfinished>;

/// A command that went to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// A row ended `failed`, `invalid` or `mismatch` (exit 1; exit 0
    /// otherwise).
    pub rows_failed: bool,
}

/// Why a command did not go to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfinished {
    /// Refused for its flags, files or input: nothing was sent (exit 2).
    Refused,
    /// Stopped by SIGINT or SIGTERM (exit 130).
    Interrupted,
    /// Stopped because it could not go on: the API rejected the token, a
    /// threshold was crossed, or a file could not be read or written
    /// (exit 3).
    Aborted,
}

impl Finished {
    /// Went to the end and every row succeeded.
    pub const CLEAN: Finished = Finished { rows_failed: false };
}

/// The process exit code, as the contract names them: the one place a
/// number is chosen.
pub fn exit_code(ending: Ending) -> u8 {
    match ending {
        Ok(Finished { rows_failed: false }) => 0,
        Ok(Finished { rows_failed: true }) => 1,
        Err(Unfinished::Refused) => 2,
        Err(Unfinished::Aborted) => 3,
        Err(Unfinished::Interrupted) => 130,
    }
}

/// Leaves the process at once, as interrupted: a second signal, or one
/// before anything started.
pub fn exit_interrupted() -> ! {
    std::process::exit(i32::from(exit_code(Err(Unfinished::Interrupted))))
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
    /// Why a command that met this did not go to its end.
    pub fn unfinished(&self) -> Unfinished {
        match self {
            Fatal::Usage(_) | Fatal::Input(_) => Unfinished::Refused,
            Fatal::Unauthorized(_) | Fatal::Aborted(_) => Unfinished::Aborted,
            Fatal::Interrupted => Unfinished::Interrupted,
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
        assert_eq!(exit_code(Ok(Finished::CLEAN)), 0);
        assert_eq!(exit_code(Ok(Finished { rows_failed: true })), 1);
        let code = |fatal: Fatal| exit_code(Err(fatal.unfinished()));
        assert_eq!(code(Fatal::Usage(String::new())), 2);
        assert_eq!(code(Fatal::Input(String::new())), 2);
        assert_eq!(code(Fatal::Unauthorized(String::new())), 3);
        assert_eq!(code(Fatal::Aborted(String::new())), 3);
        assert_eq!(code(Fatal::Interrupted), 130);
    }
}
