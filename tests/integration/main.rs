//! The integration suite: the built binary against the project's own
//! simulator of the Gcore IAM API on 127.0.0.1. One binary, one link step.

mod common;

mod audit;
mod browser;
mod container;
mod core;
mod hostile;
mod integrity;
mod messages;
mod migration;
mod network;
mod operations;
mod pacing;
mod reliability;
mod report;
mod shell;
mod spreadsheet;
mod times;
