//! The vocabulary of a run, with no candle in it: what is asked (config),
//! what the engine reports (events), what accumulates (results, summary)
//! and how it is printed (report). The engine produces these; the TUI, the
//! commands and the store consume them.

mod config;
mod event;
mod model;
pub mod report;
mod results;
mod shard;

pub use config::{DatasetSpec, RunConfig};
pub use event::{DatasetInfo, Event, ImageRecord, Progress, Role, RunInfo};
pub use model::{Family, InputSpec, ModelInfo, ModelSpec};
pub use results::*;
pub use shard::Shard;
