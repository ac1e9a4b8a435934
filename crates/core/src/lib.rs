//! gradnorm-core: the vocabulary of gradnorm-tui, with no candle in its
//! dependency tree. What a run is asked to do ([`run::RunConfig`] and its
//! TOML file), what it reports ([`run::Event`]), what it found
//! ([`run::RunResults`], [`run::Summary`], the report), how it is measured
//! ([`metrics`]), and which OOD scores exist ([`method`]: the registry of
//! names, parameters, defaults, ranges, help and needs). Every default lives
//! here, once; the engine computes what these types describe.

pub mod error;
pub mod method;
pub mod metrics;
pub mod run;

pub use error::{Error, Result};
