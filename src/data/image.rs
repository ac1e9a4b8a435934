//! Decoding any image to RGB and turning it into a normalized CHW input.

use crate::error::{Error, Result};
use crate::model::InputSpec;
use fast_image_resize as fr;
use std::path::Path;

/// Decodes a file to 8-bit RGB (grey, palette, alpha, 16-bit and CMYK too).
pub fn load_rgb(path: &Path) -> Result<::image::RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let img = ::image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::data(path, e.to_string()))?
        .decode()
        .map_err(|e| Error::data(path, format!("cannot decode: {e}")))?;
    Ok(img.to_rgb8())
}

/// Resizes to size x size (bilinear with antialiasing, as PIL) and
/// normalizes to CHW f32: (v / 255 - mean) / std.
pub fn to_input(img: &::image::RgbImage, spec: &InputSpec) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let s = spec.size as u32;
    let resized: Vec<u8> = if (w, h) == (s, s) {
        img.as_raw().clone()
    } else {
        let src = fr::images::Image::from_vec_u8(w, h, img.as_raw().clone(), fr::PixelType::U8x3)
            .expect("buffer matches dimensions");
        let mut dst = fr::images::Image::new(s, s, fr::PixelType::U8x3);
        let opts = fr::ResizeOptions::new()
            .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear));
        fr::Resizer::new()
            .resize(&src, &mut dst, &opts)
            .expect("same pixel type");
        dst.into_vec()
    };
    let plane = (s * s) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in resized.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (px[c] as f32 / 255.0 - spec.mean[c]) / spec.std[c];
        }
    }
    out
}
