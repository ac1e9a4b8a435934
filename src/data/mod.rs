//! Images in: decoding to RGB, the seed's resize and normalization, datasets
//! and the parallel prefetching loader.

pub mod image;
