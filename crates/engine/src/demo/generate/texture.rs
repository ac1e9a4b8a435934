//! Texture and noise images without any object (also faint backgrounds).

use super::colour::{contrasting, finish, lerp, random_colour, Colour};
use super::SIZE;
use crate::rng::Pcg32;
use image::RgbImage;
use std::f32::consts::TAU;

/// A texture or noise image without any object.
pub(super) fn texture(variant: &str, rng: &mut Pcg32) -> RgbImage {
    let a = random_colour(rng);
    let b = contrasting(rng, &a, 50.0);
    let pixels = texture_pixels(variant, &a, &b, rng);
    finish(&pixels, rng)
}

/// The pixels of a texture between colours `a` and `b`.
pub(super) fn texture_pixels(
    variant: &str,
    a: &Colour,
    b: &Colour,
    rng: &mut Pcg32,
) -> Vec<Colour> {
    let (a, b) = (*a, *b);
    let s = SIZE as f32;
    let ang = rng.range(0.0, TAU);
    let (sin, cos) = ang.sin_cos();
    let mut pixels = Vec::with_capacity((SIZE * SIZE) as usize);
    match variant {
        "stripes" => {
            let period = rng.range(5.0, 16.0);
            let phase = rng.range(0.0, TAU);
            let sharp = rng.chance(0.5);
            for y in 0..SIZE {
                for x in 0..SIZE {
                    let t = (x as f32 * cos + y as f32 * sin) / period * TAU + phase;
                    let w = if sharp {
                        (t.sin() > 0.0) as u8 as f32
                    } else {
                        0.5 + 0.5 * t.sin()
                    };
                    pixels.push(lerp(&a, &b, w));
                }
            }
        }
        "checker" => {
            let cell = rng.range(4.0, 12.0);
            for y in 0..SIZE {
                for x in 0..SIZE {
                    let (xf, yf) = (x as f32 - s / 2.0, y as f32 - s / 2.0);
                    let (u, v) = (xf * cos + yf * sin, -xf * sin + yf * cos);
                    let parity = ((u / cell).floor() + (v / cell).floor()).rem_euclid(2.0);
                    pixels.push(if parity < 1.0 { a } else { b });
                }
            }
        }
        "noise" => {
            // As strong as the two colours are apart (faint as a background).
            let spread = (0..3).fold(0f32, |m, k| m.max((a[k] - b[k]).abs()));
            let sigma = rng.range(25.0, 70.0) * (spread / 100.0).min(1.0);
            let mono = rng.chance(0.5);
            for _ in 0..SIZE * SIZE {
                if mono {
                    let n = sigma * rng.normal();
                    pixels.push(a.map(|c| c + n));
                } else {
                    pixels.push(a.map(|c| c + sigma * rng.normal()));
                }
            }
        }
        "blobs" => {
            // Value noise: a coarse random grid, bilinearly smoothed.
            let g = 3 + rng.below(5);
            let grid: Vec<f32> = (0..(g + 1) * (g + 1)).map(|_| rng.unit()).collect();
            for y in 0..SIZE {
                for x in 0..SIZE {
                    let gx = x as f32 / s * g as f32;
                    let gy = y as f32 / s * g as f32;
                    let (ix, iy) = (gx.floor() as usize, gy.floor() as usize);
                    let (fx, fy) = (smooth(gx - ix as f32), smooth(gy - iy as f32));
                    let at = |i: usize, j: usize| grid[j * (g + 1) + i];
                    let top = at(ix, iy) * (1.0 - fx) + at(ix + 1, iy) * fx;
                    let bottom = at(ix, iy + 1) * (1.0 - fx) + at(ix + 1, iy + 1) * fx;
                    pixels.push(lerp(&a, &b, top * (1.0 - fy) + bottom * fy));
                }
            }
        }
        "polka" => {
            let spacing = rng.range(8.0, 16.0);
            let r = spacing * rng.range(0.2, 0.4);
            for y in 0..SIZE {
                for x in 0..SIZE {
                    let (xf, yf) = (x as f32 + 0.5, y as f32 + 0.5);
                    let (u, v) = (xf * cos + yf * sin, -xf * sin + yf * cos);
                    let du = u - spacing * (u / spacing).round();
                    let dv = v - spacing * (v / spacing).round();
                    let d = (du * du + dv * dv).sqrt();
                    let w = (r + 0.5 - d).clamp(0.0, 1.0);
                    pixels.push(lerp(&a, &b, w));
                }
            }
        }
        "gradient" => {
            for y in 0..SIZE {
                for x in 0..SIZE {
                    let t = ((x as f32 / s - 0.5) * cos + (y as f32 / s - 0.5) * sin + 0.5)
                        .clamp(0.0, 1.0);
                    pixels.push(lerp(&a, &b, t));
                }
            }
        }
        other => unreachable!("no texture {other}"),
    }
    pixels
}

fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}
