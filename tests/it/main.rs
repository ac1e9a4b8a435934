//! The integration tests, one binary with a module per area: one link of
//! the candle-heavy library instead of one per file (two cores in CI).
//! Tests that need `../shared` print why they skip and return.

mod common;

mod bad_input;
mod bit_model;
mod data;
mod demo;
mod efficientnet;
mod eval;
mod fuzz_readers;
mod gradnorm_ablation;
mod mahalanobis;
mod methods;
mod metrics;
mod scores;
mod slurm;
mod store;
mod torchvision;
mod tui;
mod tui_findings;
mod tui_runs;
mod tui_tmux;
mod tui_workbench;
