//! Decoding any image to RGB and turning it into a normalized CHW input,
//! the way the seed does it: PIL's `Image.open(f).convert('RGB')`, then
//! torchvision's `Resize((N, N))` (PIL's antialiased bilinear resize),
//! `ToTensor()` and `Normalize(mean, std)`.
//!
//! The resize is a re-implementation of Pillow's fixed-point two-pass
//! resampler, so for identical decoded pixels the result is bit-identical
//! to the seed's tensors. Sequential JPEGs are decoded bit-exactly as
//! libjpeg-turbo does (`super::jpeg`); other JPEGs (progressive, CMYK, ...)
//! go to zune-jpeg through the `image` crate, which is not bit-exact with
//! libjpeg-turbo (a level or two on some values).

use crate::error::{Error, Result};
use ::image::{DynamicImage, ImageFormat, ImageReader, RgbImage};
use gradnorm_core::run::crop_resize;
use gradnorm_core::run::{InputSpec, Resize};
use std::path::Path;

/// Decodes a file to 8-bit RGB as PIL's `Image.open(f).convert('RGB')`
/// does: grey and palette images expanded, alpha dropped (not composited),
/// 16-bit channels reduced as PIL reduces them, CMYK JPEGs converted with
/// Adobe's inverted convention, EXIF orientation not applied. One
/// departure: 16-bit greyscale keeps its high byte like every other 16-bit
/// image (PIL clips it at 255, so a 16-bit copy of an 8-bit image would come
/// out nearly white and be classified unlike its twin).
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_rgb(&bytes).map_err(|reason| Error::data(path, reason))
}

thread_local! {
    static EXPECTED_PANIC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is inside a decoder call whose panic is caught and
/// turned into "cannot decode" (so a panic hook need not report a bug).
pub fn panic_expected() -> bool {
    EXPECTED_PANIC.with(|p| p.get())
}

/// [`load_rgb`] on bytes already read; the error is the reason alone.
pub fn decode_rgb(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let format = reader
        .format()
        .ok_or_else(|| "not an image (unrecognized format)".to_string())?;
    if format == ImageFormat::Jpeg {
        // zune-jpeg fills missing data with grey; PIL (libjpeg) refuses a
        // file that ends before its EOI marker, and so do we.
        jpeg_complete(bytes)?;
        // Bit-exact with libjpeg-turbo where it applies (sequential JPEGs,
        // the usual case); zune-jpeg below otherwise.
        if let Some(img) = super::jpeg::decode(bytes) {
            return Ok(img);
        }
    }
    // Some decoders panic on malformed data (zune-jpeg 0.5 does on some
    // corrupt JPEGs); that must fail this file, not the loader.
    EXPECTED_PANIC.with(|p| p.set(true));
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.decode()));
    EXPECTED_PANIC.with(|p| p.set(false));
    let img = decoded
        .map_err(|_| format!("cannot decode {format:?}: the decoder crashed on malformed data"))?
        .map_err(|e| format!("cannot decode {format:?}: {e}"))?;
    if img.width() == 0 || img.height() == 0 {
        return Err("empty image (zero width or height)".into());
    }
    Ok(to_rgb_like_pil(img))
}

/// PIL's conversions to RGB, where they differ from the `image` crate's.
fn to_rgb_like_pil(img: DynamicImage) -> RgbImage {
    use DynamicImage::*;
    match img {
        ImageRgb8(rgb) => rgb,
        // 16-bit channels keep the most significant byte, grey too (not
        // PIL's I;16 clip at 255: see `load_rgb`). A grey PNG with tRNS
        // arrives as grey+alpha.
        ImageLuma16(g) => map_rgb(g.width(), g.height(), g.pixels(), |p| {
            let v = (p.0[0] >> 8) as u8;
            [v, v, v]
        }),
        ImageLumaA16(g) => map_rgb(g.width(), g.height(), g.pixels(), |p| {
            let v = (p.0[0] >> 8) as u8;
            [v, v, v]
        }),
        ImageRgb16(c) => map_rgb(c.width(), c.height(), c.pixels(), |p| {
            p.0.map(|v| (v >> 8) as u8)
        }),
        ImageRgba16(c) => map_rgb(c.width(), c.height(), c.pixels(), |p| {
            [p.0[0], p.0[1], p.0[2]].map(|v| (v >> 8) as u8)
        }),
        // Grey (replicated), grey+alpha and RGBA (alpha dropped) are the
        // same in both; float images have no PIL counterpart.
        other => other.to_rgb8(),
    }
}

fn map_rgb<'a, P: 'a>(
    width: u32,
    height: u32,
    pixels: impl Iterator<Item = &'a P>,
    f: impl Fn(&P) -> [u8; 3],
) -> RgbImage {
    let raw: Vec<u8> = pixels.flat_map(f).collect();
    RgbImage::from_raw(width, height, raw).expect("one RGB pixel per source pixel")
}

/// Walks a JPEG's markers and entropy-coded data up to EOI; an error when
/// the data ends first: a truncated file, or, when the file does end in an
/// EOI marker, a corrupt one (segment lengths that run past it).
fn jpeg_complete(b: &[u8]) -> std::result::Result<(), String> {
    jpeg_walk(b).map_err(|truncated| {
        if b.ends_with(&[0xFF, 0xD9]) {
            "corrupt JPEG (the file ends in its EOI marker, but its segments do not lead there)"
                .to_string()
        } else {
            truncated
        }
    })
}

fn jpeg_walk(b: &[u8]) -> std::result::Result<(), String> {
    const TRUNCATED: &str = "truncated JPEG (the data ends before the EOI marker)";
    let mut i = 2; // past SOI
    loop {
        // Markers may be preceded by any number of fill bytes 0xFF.
        while i < b.len() && b[i] != 0xFF {
            i += 1;
        }
        while i < b.len() && b[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = b.get(i) else {
            return Err(TRUNCATED.into());
        };
        i += 1;
        match marker {
            0xD9 => return Ok(()),
            // Standalone markers: TEM, RSTn.
            0x01 | 0xD0..=0xD7 => {}
            _ => {
                let len = match b.get(i..i + 2) {
                    Some(l) => u16::from_be_bytes([l[0], l[1]]) as usize,
                    None => return Err(TRUNCATED.into()),
                };
                i += len;
                if i > b.len() {
                    return Err(TRUNCATED.into());
                }
                if marker == 0xDA {
                    // Entropy-coded data: runs until a marker other than
                    // a stuffed zero or a restart marker.
                    loop {
                        match b.get(i..i + 2) {
                            None => return Err(TRUNCATED.into()),
                            Some([0xFF, 0x00]) | Some([0xFF, 0xD0..=0xD7]) => i += 2,
                            Some([0xFF, _]) => break,
                            Some(_) => i += 1,
                        }
                    }
                }
            }
        }
    }
}

/// The model's preprocessing of a decoded image, normalized to CHW f32
/// `(v / 255 - mean) / std`: PIL's `resize((size, size), BILINEAR)` for
/// [`Resize::Squash`], torchvision's `Resize(floor(size / 0.875))` and
/// `CenterCrop(size)` for [`Resize::ShorterCrop`] (on PIL images, so the
/// same Pillow resampler).
pub fn to_input(img: &RgbImage, spec: &InputSpec) -> Vec<f32> {
    let mut out = vec![0f32; 3 * spec.size * spec.size];
    to_input_into(img, spec, &mut out);
    out
}

/// [`to_input`] into a caller's buffer of exactly `3 * size * size` values.
pub fn to_input_into(img: &RgbImage, spec: &InputSpec, out: &mut [f32]) {
    let s = spec.size;
    assert_eq!(out.len(), 3 * s * s, "to_input_into: buffer size");
    // The same f32 operations as ToTensor (v / 255) and Normalize.
    let lut: [[f32; 256]; 3] = std::array::from_fn(|c| {
        std::array::from_fn(|v| (v as f32 / 255.0 - spec.mean[c]) / spec.std[c])
    });
    let plane = s * s;
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    let ((rw, rh), (left, top)) = match spec.resize {
        Resize::Squash => ((s, s), (0, 0)),
        Resize::ShorterCrop => {
            let (rw, rh) =
                shorter_side_size(img.width() as usize, img.height() as usize, crop_resize(s));
            ((rw, rh), (centre_offset(rw, s), centre_offset(rh, s)))
        }
    };
    resample(img, rw, rh, |y, row| {
        if y < top || y >= top + s {
            return;
        }
        let at = (y - top) * s;
        for (x, px) in row[3 * left..3 * (left + s)].chunks_exact(3).enumerate() {
            r[at + x] = lut[0][px[0] as usize];
            g[at + x] = lut[1][px[1] as usize];
            b[at + x] = lut[2][px[2] as usize];
        }
    });
}

/// torchvision's `Resize(short)` output size (width, height): the shorter
/// side to `short`, the longer to `int(short * long / short_in)`.
fn shorter_side_size(w: usize, h: usize, short: usize) -> (usize, usize) {
    let (s_in, l_in) = if w <= h { (w, h) } else { (h, w) };
    // Python: int(requested * long / short), true division in doubles.
    let long = ((short * l_in) as f64 / s_in as f64) as usize;
    if w <= h {
        (short, long)
    } else {
        (long, short)
    }
}

/// `CenterCrop`'s offset: `int(round((len - size) / 2.0))`, Python's round
/// (half to even).
fn centre_offset(len: usize, size: usize) -> usize {
    let d = len.saturating_sub(size);
    let q = d / 2;
    if d % 2 == 1 && q % 2 == 1 {
        q + 1
    } else {
        q
    }
}

/// PIL's `resize((width, height), Image.BILINEAR)` of an RGB image,
/// bit-exact (antialiased when downscaling, 8-bit fixed point).
pub fn resize_bilinear(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (w, h) = (width as usize, height as usize);
    let mut raw = vec![0u8; 3 * w * h];
    resample(img, w, h, |y, row| {
        raw[3 * w * y..3 * w * (y + 1)].copy_from_slice(row)
    });
    RgbImage::from_raw(width, height, raw).expect("sized above")
}

/// Pillow's 8-bit coefficients carry this many fractional bits.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's per-output-pixel filter windows along one axis.
struct Kernel {
    /// First input index and number of taps, per output index.
    bounds: Vec<(usize, usize)>,
    /// `ksize` fixed-point weights per output index.
    weights: Vec<i32>,
    ksize: usize,
}

impl Kernel {
    /// Pillow's `precompute_coeffs` with the bilinear (triangle) filter,
    /// support 1 scaled by the reduction factor, then
    /// `normalize_coeffs_8bpc`.
    fn bilinear(in_size: usize, out_size: usize) -> Kernel {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filterscale; // the triangle's support is 1
        let ksize = support.ceil() as usize * 2 + 1;
        let ss = 1.0 / filterscale;
        let mut bounds = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * ksize];
        let mut k = vec![0f64; ksize];
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) truncates toward zero, as `as` does.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
            let mut ww = 0.0;
            for (x, kx) in k.iter_mut().enumerate().take(xmax) {
                let t = ((x + xmin) as f64 - center + 0.5) * ss;
                let w = (1.0 - t.abs()).max(0.0);
                *kx = w;
                ww += w;
            }
            let dst = &mut weights[xx * ksize..xx * ksize + xmax];
            for (d, &kx) in dst.iter_mut().zip(&k[..xmax]) {
                let v = if ww != 0.0 { kx / ww } else { kx };
                let f = v * (1u32 << PRECISION_BITS) as f64;
                *d = if v < 0.0 {
                    (f - 0.5) as i32
                } else {
                    (f + 0.5) as i32
                };
            }
            bounds.push((xmin, xmax));
        }
        Kernel {
            bounds,
            weights,
            ksize,
        }
    }

    fn taps(&self, i: usize) -> (usize, &[i32]) {
        let (start, n) = self.bounds[i];
        (start, &self.weights[i * self.ksize..i * self.ksize + n])
    }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One row of the horizontal pass: `src` RGB pixels to `out`.
fn horizontal_row(src: &[u8], kernel: &Kernel, out: &mut [u8]) {
    for (xx, px) in out.chunks_exact_mut(3).enumerate() {
        let (start, k) = kernel.taps(xx);
        let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
        for (p, &w) in src[start * 3..].chunks_exact(3).zip(k) {
            acc[0] += p[0] as i32 * w;
            acc[1] += p[1] as i32 * w;
            acc[2] += p[2] as i32 * w;
        }
        px.copy_from_slice(&acc.map(clip8));
    }
}

/// Output row `yy` of the vertical pass over `src` (rows of `out.len()`
/// bytes, the first being source row `src_first`); `acc` is scratch.
fn vertical_row(
    src: &[u8],
    src_first: usize,
    kernel: &Kernel,
    yy: usize,
    acc: &mut [i32],
    out: &mut [u8],
) {
    let stride = out.len();
    let (start, k) = kernel.taps(yy);
    acc.fill(1 << (PRECISION_BITS - 1));
    for (j, &w) in k.iter().enumerate() {
        let at = (start + j - src_first) * stride;
        for (a, &p) in acc.iter_mut().zip(&src[at..at + stride]) {
            *a += p as i32 * w;
        }
    }
    for (o, &a) in out.iter_mut().zip(acc.iter()) {
        *o = clip8(a);
    }
}

/// Pillow's two-pass resample, handing each finished RGB row to
/// `emit(y, row)` in order. The passes go through an 8-bit intermediate,
/// so their order changes the rounding: Pillow (13) resizes horizontally
/// first, restricted to the rows the vertical pass reads, unless the height
/// shrinks by more than twice as many pixels as the width does. Pillow 12
/// and older always went horizontally first; the two differ by a level on
/// some pixels of such (e.g. portrait) images.
fn resample(img: &RgbImage, out_w: usize, out_h: usize, mut emit: impl FnMut(usize, &[u8])) {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let src = img.as_raw();
    let vert = Kernel::bilinear(in_h, out_h);
    let horiz = (out_w != in_w).then(|| Kernel::bilinear(in_w, out_w));
    let mut row = vec![0u8; out_w * 3];
    let vertical_first = in_h > out_h && (in_h - out_h) as i64 > 2 * (in_w as i64 - out_w as i64);

    if let (Some(horiz), true, true) = (&horiz, vertical_first, out_h != in_h) {
        let mut tmp = vec![0u8; out_h * in_w * 3];
        let mut acc = vec![0i32; in_w * 3];
        for (yy, t) in tmp.chunks_exact_mut(in_w * 3).enumerate() {
            vertical_row(src, 0, &vert, yy, &mut acc, t);
        }
        for (yy, t) in tmp.chunks_exact(in_w * 3).enumerate() {
            horizontal_row(t, horiz, &mut row);
            emit(yy, &row);
        }
        return;
    }

    // Horizontal pass over the rows the vertical pass reads.
    let first = vert.bounds.first().map_or(0, |b| b.0);
    let last = vert.bounds.last().map_or(0, |b| b.0 + b.1);
    let tmp_owned;
    let (tmp, tmp_first): (&[u8], usize) = match &horiz {
        Some(horiz) => {
            let mut t = vec![0u8; (last - first) * out_w * 3];
            for (row_out, y) in t.chunks_exact_mut(out_w * 3).zip(first..last) {
                horizontal_row(&src[y * in_w * 3..(y + 1) * in_w * 3], horiz, row_out);
            }
            tmp_owned = t;
            (&tmp_owned, first)
        }
        None => (src, 0),
    };
    let stride = out_w * 3;
    if out_h == in_h {
        for y in 0..out_h {
            let at = (y - tmp_first) * stride;
            emit(y, &tmp[at..at + stride]);
        }
        return;
    }
    let mut acc = vec![0i32; stride];
    for yy in 0..out_h {
        vertical_row(tmp, tmp_first, &vert, yy, &mut acc, &mut row);
        emit(yy, &row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_resize_and_crop_geometry() {
        // Resize(256): the shorter side to 256, the longer int(256 * l / s).
        assert_eq!(shorter_side_size(500, 375, 256), (341, 256));
        assert_eq!(shorter_side_size(375, 500, 256), (256, 341));
        assert_eq!(shorter_side_size(32, 32, 36), (36, 36));
        // CenterCrop: int(round((len - size) / 2.0)), half to even.
        assert_eq!(centre_offset(341, 224), 58); // 58.5 -> 58
        assert_eq!(centre_offset(227, 224), 2); // 1.5 -> 2
        assert_eq!(centre_offset(256, 224), 16);
        assert_eq!(centre_offset(73, 64), 4); // 4.5 -> 4
    }

    #[test]
    fn jpeg_walk_finds_eoi_and_truncation() {
        // SOI, an APP0 of length 4, SOS (length 3 + 1 byte), data with a
        // stuffed 0xFF and a restart marker, EOI.
        let ok = [
            0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 1, 2, 0xFF, 0xDA, 0, 3, 9, 1, 0xFF, 0, 2, 0xFF, 0xD3, 3,
            0xFF, 0xD9,
        ];
        assert!(jpeg_complete(&ok).is_ok());
        for cut in 2..ok.len() - 1 {
            assert!(jpeg_complete(&ok[..cut]).is_err(), "cut at {cut}");
        }
    }
}
