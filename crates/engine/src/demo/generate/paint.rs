//! Backgrounds and the anti-aliased figure rasterizer.

use super::colour::{contrasting, finish, lerp, random_colour, Colour};
use super::figure::Figure;
use super::texture::texture_pixels;
use super::SIZE;
use crate::rng::Pcg32;
use image::RgbImage;
use std::f32::consts::TAU;

/// Textures that also serve, faintly, as backgrounds of the shapes: a
/// texture alone is then "background without an object" to the model, not
/// a pattern it never saw.
const BACKGROUND_TEXTURES: [&str; 5] = ["stripes", "checker", "noise", "blobs", "polka"];

/// A background: solid (a quarter), a gentle gradient (a quarter) or a
/// low-contrast texture (half). Returns its pixels and mean colour.
fn background(rng: &mut Pcg32) -> (Vec<Colour>, Colour) {
    let a = random_colour(rng);
    let c = random_colour(rng);
    let kind = rng.below(4);
    let pixels = if kind < 2 {
        // Solid when b == a.
        let b = if kind == 0 {
            a
        } else {
            lerp(&a, &c, rng.range(0.2, 0.6))
        };
        texture_pixels("gradient", &a, &b, rng)
    } else {
        let variant = BACKGROUND_TEXTURES[rng.below(BACKGROUND_TEXTURES.len())];
        let b = lerp(&a, &c, rng.range(0.15, 0.35));
        texture_pixels(variant, &a, &b, rng)
    };
    let n = pixels.len() as f32;
    let sum = pixels
        .iter()
        .fold([0f32; 3], |m, p| [m[0] + p[0], m[1] + p[1], m[2] + p[2]]);
    (pixels, sum.map(|v| v / n))
}

/// Draws `fig` at a random size, place and rotation on a random background.
pub(super) fn render_figure(fig: &Figure, rng: &mut Pcg32) -> RgbImage {
    const SS: usize = 3;
    let s = SIZE as f32;
    let (bg, bg_mean) = background(rng);
    let fg = contrasting(rng, &bg_mean, 60.0);
    let scale = rng.range(13.0, 24.0);
    let margin = scale * 0.85 + 1.0;
    let (cx, cy) = (rng.range(margin, s - margin), rng.range(margin, s - margin));
    let theta = rng.range(0.0, TAU);
    let (sin, cos) = theta.sin_cos();
    // A light shading across the shape, so its colour is not flat.
    let shade_dir = rng.range(0.0, TAU);
    let shade = rng.range(0.0, 0.25);
    let reach2 = (1.45 * scale + 1.5).powi(2);
    let mut pixels = Vec::with_capacity((SIZE * SIZE) as usize);
    for y in 0..SIZE {
        for x in 0..SIZE {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let back = bg[(y * SIZE + x) as usize];
            if (px - cx).powi(2) + (py - cy).powi(2) > reach2 {
                pixels.push(back);
                continue;
            }
            let mut hits = 0;
            for sy in 0..SS {
                for sx in 0..SS {
                    let qx = x as f32 + (sx as f32 + 0.5) / SS as f32 - cx;
                    let qy = y as f32 + (sy as f32 + 0.5) / SS as f32 - cy;
                    let (u, v) = (
                        (qx * cos + qy * sin) / scale,
                        (-qx * sin + qy * cos) / scale,
                    );
                    if fig.contains(u, v) {
                        hits += 1;
                    }
                }
            }
            let cov = hits as f32 / (SS * SS) as f32;
            let t = ((px - cx) * shade_dir.cos() + (py - cy) * shade_dir.sin()) / scale;
            let lit = fg.map(|c| c * (1.0 + shade * t.clamp(-1.0, 1.0)));
            pixels.push(lerp(&back, &lit, cov));
        }
    }
    finish(&pixels, rng)
}
