//! Where a row is recorded: the results writer, the ledger a resumed run
//! reads back, the undo file, and which paths a command may write.

pub mod files;
pub mod format;
pub mod ledger;
pub mod undo;
pub mod writer;
