//! gradnorm-engine: everything that computes, on candle, and nothing of the
//! terminal. Data flows one way: `data` (decode, resize, normalize) ->
//! `model` (BiT, EfficientNet-Lite, ResNet, ViT) -> `score` (every method
//! of the core's registry) -> `engine` (one way to start a run; events out)
//! -> `store` (records what it is given). The vocabulary (configuration,
//! events, results, metrics, the method registry) is `gradnorm_core`.

pub mod classes;
pub mod data;
pub mod demo;
pub mod device;
pub mod engine;
pub mod error;
pub mod model;
pub mod rng;
pub mod score;
pub mod store;
pub mod weights;

pub use error::{Error, Result};
