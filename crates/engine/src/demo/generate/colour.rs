//! Colours, and the final noise and rounding every image gets (figures
//! and textures alike).

use super::SIZE;
use crate::rng::Pcg32;
use image::{Rgb, RgbImage};

pub(super) type Colour = [f32; 3];

pub(super) fn random_colour(rng: &mut Pcg32) -> Colour {
    [
        rng.range(0.0, 255.0),
        rng.range(0.0, 255.0),
        rng.range(0.0, 255.0),
    ]
}

fn luma(c: &Colour) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

/// A colour whose brightness differs from `other` by at least `min_gap`
/// (the best of a few tries).
pub(super) fn contrasting(rng: &mut Pcg32, other: &Colour, min_gap: f32) -> Colour {
    let mut best = random_colour(rng);
    for _ in 0..16 {
        if (luma(&best) - luma(other)).abs() >= min_gap {
            break;
        }
        let c = random_colour(rng);
        if (luma(&c) - luma(other)).abs() > (luma(&best) - luma(other)).abs() {
            best = c;
        }
    }
    best
}

pub(super) fn lerp(a: &Colour, b: &Colour, t: f32) -> Colour {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// Per-pixel colour noise of a random strength, then rounding to 8 bits.
pub(super) fn finish(pixels: &[Colour], rng: &mut Pcg32) -> RgbImage {
    let sigma = if rng.chance(0.25) {
        0.0
    } else {
        rng.range(2.0, 14.0)
    };
    let mut img = RgbImage::new(SIZE, SIZE);
    for (i, px) in img.pixels_mut().enumerate() {
        let c = &pixels[i];
        let mut out = [0u8; 3];
        for k in 0..3 {
            let v = if sigma > 0.0 {
                c[k] + sigma * rng.normal()
            } else {
                c[k]
            };
            out[k] = v.round().clamp(0.0, 255.0) as u8;
        }
        *px = Rgb(out);
    }
    img
}
