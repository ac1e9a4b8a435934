//! The integration tests, one binary with a module per area: one link of
//! the candle-heavy library instead of one per file (two cores in CI).
//! Tests that need `../shared` print why they skip and return.

mod common;

mod bad_input;
mod bit_model;
mod data;
mod defaults;
mod demo;
mod efficientnet;
mod eval;
mod fuzz_readers;
mod gradient_detectors;
mod gradnorm_ablation;
mod mahalanobis;
mod methods;
mod metrics;
mod openood;
mod scores;
mod slurm;
mod store;
mod torchvision;
mod tui;
