//! The vocabulary of a run, with no candle in it: what is asked (config),
//! what the engine reports (events), what accumulates (results, summary)
//! and how it is printed (report). The engine produces these; the TUI, the
//! commands and the store consume them.

pub mod benchmark;
mod config;
mod event;
pub mod file;
mod model;
pub mod report;
mod results;
mod shard;

pub use benchmark::Benchmark;
pub use config::{
    check_batch_bytes, Batch, ConfigError, DType, DatasetSpec, Device, ImageSize, Limit,
    ListFormat, RunConfig, ValueError, Workers,
};
pub use event::{DatasetInfo, Event, ImageRecord, Progress, Role, RunInfo, Setup};
pub use model::{
    crop_resize, Family, InputSpec, ModelInfo, ModelSpec, Preprocess, Resize, IMAGENET_MEAN,
    IMAGENET_STD,
};
pub use results::*;
pub use shard::Shard;
