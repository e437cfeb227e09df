//! The integration suite: the built binary against the project's own
//! simulator of the Gcore IAM API on 127.0.0.1. One binary, one link step.

mod common;

mod core;
mod hostile;
mod pacing;
mod reliability;
