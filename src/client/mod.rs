//! Where a row is sent: one HTTP attempt (`api`), the caller that paces and
//! retries it (`call`), the pacing that keeps within the API's quota
//! (`pacing`), the retry policy (`retry`), TLS and proxies (`network`) and the
//! API token (`token`).

pub mod api;
pub mod call;
pub mod network;
pub mod pacing;
pub mod retry;
pub mod token;
