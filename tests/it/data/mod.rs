//! The data pipeline: decoding and preprocessing against the seed's own
//! tensors, datasets on the shared data, formats, corrupt files, and the
//! loader's order, failures and cancellation.

mod datasets;
mod formats;
mod loader;
mod preprocess;

use image::RgbImage;

/// `img` encoded as `format`.
fn encode(img: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// Deterministic noise (an LCG), different for each `seed`.
fn noise(width: u32, height: u32, seed: u32) -> RgbImage {
    let mut s = seed;
    RgbImage::from_fn(width, height, |_, _| {
        image::Rgb(std::array::from_fn(|_| {
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (s >> 16) as u8
        }))
    })
}
