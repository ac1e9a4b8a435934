//! gradnorm-tui: out-of-distribution detection with GradNorm and the
//! baselines of the NeurIPS 2021 paper, on candle.
//!
//! Data flows one way: `data` (decode, resize, normalize) -> `model`
//! (BiT, EfficientNet-Lite) -> `score` -> `engine` (events) -> `store`
//! (results, summary) -> `tui` / `commands` (tables, JSON).

pub mod classes;
pub mod cli;
pub mod commands;
pub mod data;
pub mod demo;
pub mod device;
pub mod engine;
pub mod error;
pub mod interrupt;
pub mod metrics;
pub mod model;

pub mod rng;
pub mod run;
pub mod score;
pub mod store;

pub mod tui;
pub mod weights;

pub use error::{Error, Result};
