//! Where a row is decided: the pipeline that moves rows from the reader to
//! the workers and on to the results, the modes (`mode`: run, dry run,
//! plan) and their row logic (`apply`), the counts and thresholds (`stats`),
//! how a run stops (`stop`), what the terminal shows meanwhile (`progress`)
//! and the end-of-run summary (`summary`).

pub mod apply;
pub mod mode;
pub mod pipeline;
pub mod progress;
pub mod stats;
pub mod stop;
pub mod summary;
