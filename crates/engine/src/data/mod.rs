//! Images in: decoding to RGB, the seed's resize and normalization, datasets
//! and the parallel prefetching loader.

pub mod dataset;
pub mod image;
mod jpeg;
pub mod loader;
pub mod openood;

pub use dataset::{Dataset, DatasetKind, Item};
pub use loader::{batches, Batch, Loader, LoaderConfig};
