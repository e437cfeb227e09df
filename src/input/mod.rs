//! Where a row is read: the CSV source and its dialect, the header, the
//! record limit, the shard and duplicate-key checks, and the reader that
//! turns bytes into rows.

pub mod csv_bytes;
pub mod dialect;
pub mod header;
pub mod reader;
pub mod record_limit;
pub mod seen;
pub mod shard;
pub mod source;
