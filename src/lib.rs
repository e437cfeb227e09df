//! gcore-iam-bulk: apply per-account changes from a CSV file to Gcore's IAM API.

pub mod sim;
