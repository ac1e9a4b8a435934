//! Over 600 lines on purpose: the rasterizers share anti-aliasing and RNG
//! streams, and the committed demo weights depend on their order of draws.
//!
//! The demo's images: ten classes of shapes (in-distribution) and three OOD
//! sets of graded difficulty, drawn with anti-aliasing on varied backgrounds
//! with noise. Every image is a pure function of (seed, stream, index).

use super::rng::{derive, Pcg32};
use image::{Rgb, RgbImage};
use std::f32::consts::{PI, TAU};

/// Side of every generated image, in pixels.
pub const SIZE: u32 = 64;

/// The in-distribution classes, sorted: index = label (ImageFolder order).
pub const CLASSES: [&str; 10] = [
    "arrow", "circle", "crescent", "cross", "heart", "hexagon", "ring", "square", "star",
    "triangle",
];

/// How far an OOD set is from the classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OodKind {
    /// Textures and noise without any object.
    Textures,
    /// Shapes of other kinds: strokes, letters, clusters.
    NovelShapes,
    /// Shapes close to the classes (pentagon, ellipse, 4-point star, ...).
    NearShapes,
}

impl OodKind {
    pub const ALL: [OodKind; 3] = [OodKind::Textures, OodKind::NovelShapes, OodKind::NearShapes];

    /// The set's folder and display name.
    pub fn name(self) -> &'static str {
        match self {
            OodKind::Textures => "textures",
            OodKind::NovelShapes => "novel-shapes",
            OodKind::NearShapes => "near-shapes",
        }
    }

    /// The kinds of image in this set; image i is of kind i mod len.
    pub fn variants(self) -> &'static [&'static str] {
        match self {
            OodKind::Textures => &["stripes", "checker", "noise", "blobs", "polka", "gradient"],
            OodKind::NovelShapes => &["spiral", "zigzag", "dots", "letter-h", "bolt", "cloud"],
            OodKind::NearShapes => &[
                "pentagon",
                "octagon",
                "ellipse",
                "rectangle",
                "semicircle",
                "star4",
                "star7",
                "open-ring",
            ],
        }
    }
}

/// Class `class` (an index into `CLASSES`), image `index` of stream `tag`.
pub fn class_image(seed: u64, tag: &str, class: usize, index: usize) -> RgbImage {
    let mut rng = Pcg32::new(derive(
        seed,
        &format!("{tag}/{}", CLASSES[class]),
        index as u64,
    ));
    let fig = class_figure(class);
    render_figure(&fig, &mut rng)
}

/// Image `index` of an OOD set, with the name of its variant.
pub fn ood_image(seed: u64, kind: OodKind, index: usize) -> (RgbImage, &'static str) {
    let variants = kind.variants();
    let variant = variants[index % variants.len()];
    let mut rng = Pcg32::new(derive(seed, kind.name(), index as u64));
    let img = match kind {
        OodKind::Textures => texture(variant, &mut rng),
        OodKind::NovelShapes | OodKind::NearShapes => {
            let fig = ood_figure(variant, &mut rng);
            render_figure(&fig, &mut rng)
        }
    };
    (img, variant)
}

/// A figure in local coordinates, roughly within the unit disc.
#[derive(Debug, Clone)]
enum Figure {
    /// Even-odd polygon.
    Poly(Vec<(f32, f32)>),
    Ellipse {
        rx: f32,
        ry: f32,
    },
    /// Annulus; points with |angle| < gap are left out.
    Annulus {
        r0: f32,
        r1: f32,
        gap: f32,
    },
    /// A disc minus an offset disc.
    Crescent {
        r: f32,
        offset: f32,
        r_cut: f32,
    },
    Heart,
    Box {
        hx: f32,
        hy: f32,
    },
    /// A disc cut by a line: points of the disc with v >= cut.
    Segment {
        r: f32,
        cut: f32,
    },
    /// A thick polyline.
    Stroke {
        points: Vec<(f32, f32)>,
        half_width: f32,
    },
    Union(Vec<Figure>),
    /// A disc at (x, y).
    Disc {
        x: f32,
        y: f32,
        r: f32,
    },
}

impl Figure {
    fn contains(&self, u: f32, v: f32) -> bool {
        match self {
            Figure::Poly(p) => in_polygon(p, u, v),
            Figure::Ellipse { rx, ry } => (u / rx).powi(2) + (v / ry).powi(2) <= 1.0,
            Figure::Annulus { r0, r1, gap } => {
                let r2 = u * u + v * v;
                r2 >= r0 * r0 && r2 <= r1 * r1 && (*gap <= 0.0 || v.atan2(u).abs() >= *gap)
            }
            Figure::Crescent { r, offset, r_cut } => {
                u * u + v * v <= r * r && (u - offset).powi(2) + v * v > r_cut * r_cut
            }
            Figure::Heart => {
                // (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, centred on the unit disc.
                let x = u * 1.25;
                let y = -v * 1.25 + 0.15;
                (x * x + y * y - 1.0).powi(3) - x * x * y.powi(3) <= 0.0
            }
            Figure::Box { hx, hy } => u.abs() <= *hx && v.abs() <= *hy,
            Figure::Segment { r, cut } => u * u + v * v <= r * r && v >= *cut,
            Figure::Stroke { points, half_width } => points
                .windows(2)
                .any(|w| segment_dist2(w[0], w[1], u, v) <= half_width * half_width),
            Figure::Union(parts) => parts.iter().any(|f| f.contains(u, v)),
            Figure::Disc { x, y, r } => (u - x).powi(2) + (v - y).powi(2) <= r * r,
        }
    }
}

fn in_polygon(p: &[(f32, f32)], x: f32, y: f32) -> bool {
    let mut inside = false;
    let mut j = p.len() - 1;
    for i in 0..p.len() {
        let (xi, yi) = p[i];
        let (xj, yj) = p[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

fn segment_dist2(a: (f32, f32), b: (f32, f32), x: f32, y: f32) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((x - a.0) * dx + (y - a.1) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (px, py) = (a.0 + t * dx - x, a.1 + t * dy - y);
    px * px + py * py
}

fn regular(n: usize, r: f32) -> Vec<(f32, f32)> {
    (0..n)
        .map(|k| {
            let a = TAU * k as f32 / n as f32;
            (r * a.cos(), r * a.sin())
        })
        .collect()
}

fn star(n: usize, r_out: f32, r_in: f32) -> Vec<(f32, f32)> {
    (0..2 * n)
        .map(|k| {
            let a = PI * k as f32 / n as f32;
            let r = if k % 2 == 0 { r_out } else { r_in };
            (r * a.cos(), r * a.sin())
        })
        .collect()
}

fn class_figure(class: usize) -> Figure {
    match CLASSES[class] {
        "arrow" => Figure::Poly(vec![
            (-0.9, -0.2),
            (0.15, -0.2),
            (0.15, -0.6),
            (0.95, 0.0),
            (0.15, 0.6),
            (0.15, 0.2),
            (-0.9, 0.2),
        ]),
        "circle" => Figure::Ellipse { rx: 0.85, ry: 0.85 },
        "crescent" => Figure::Crescent {
            r: 0.9,
            offset: 0.45,
            r_cut: 0.75,
        },
        "cross" => Figure::Union(vec![
            Figure::Box { hx: 0.9, hy: 0.27 },
            Figure::Box { hx: 0.27, hy: 0.9 },
        ]),
        "heart" => Figure::Heart,
        "hexagon" => Figure::Poly(regular(6, 0.9)),
        "ring" => Figure::Annulus {
            r0: 0.55,
            r1: 0.9,
            gap: 0.0,
        },
        "square" => Figure::Box { hx: 0.72, hy: 0.72 },
        "star" => Figure::Poly(star(5, 1.0, 0.42)),
        "triangle" => Figure::Poly(regular(3, 1.0)),
        other => unreachable!("class {other} has no figure"),
    }
}

fn ood_figure(variant: &str, rng: &mut Pcg32) -> Figure {
    match variant {
        // Near: one step away from a class.
        "pentagon" => Figure::Poly(regular(5, 0.92)),
        "octagon" => Figure::Poly(regular(8, 0.88)),
        "ellipse" => Figure::Ellipse {
            rx: 0.95,
            ry: rng.range(0.45, 0.65),
        },
        "rectangle" => Figure::Box {
            hx: 0.9,
            hy: rng.range(0.3, 0.5),
        },
        "semicircle" => Figure::Segment { r: 0.9, cut: -0.1 },
        "star4" => Figure::Poly(star(4, 1.0, 0.38)),
        "star7" => Figure::Poly(star(7, 1.0, 0.55)),
        "open-ring" => Figure::Annulus {
            r0: 0.55,
            r1: 0.9,
            gap: rng.range(0.5, 0.9),
        },
        // Novel: shapes unlike any class.
        "spiral" => {
            let turns = rng.range(1.8, 2.5);
            let n = 80;
            let points = (0..=n)
                .map(|k| {
                    let t = k as f32 / n as f32;
                    let a = t * turns * TAU;
                    let r = 0.12 + 0.8 * t;
                    (r * a.cos(), r * a.sin())
                })
                .collect();
            Figure::Stroke {
                points,
                half_width: rng.range(0.07, 0.11),
            }
        }
        "zigzag" => {
            let teeth = 3 + rng.below(3);
            let amp = rng.range(0.35, 0.6);
            let points = (0..=teeth)
                .map(|k| {
                    let x = -0.9 + 1.8 * k as f32 / teeth as f32;
                    (x, if k % 2 == 0 { -amp } else { amp })
                })
                .collect();
            Figure::Stroke {
                points,
                half_width: rng.range(0.08, 0.13),
            }
        }
        "dots" => {
            let n = 3 + rng.below(3);
            Figure::Union(
                (0..n)
                    .map(|_| {
                        let a = rng.range(0.0, TAU);
                        let d = rng.range(0.2, 0.75);
                        Figure::Disc {
                            x: d * a.cos(),
                            y: d * a.sin(),
                            r: rng.range(0.12, 0.22),
                        }
                    })
                    .collect(),
            )
        }
        "letter-h" => Figure::Poly(vec![
            (-0.75, -0.9),
            (-0.4, -0.9),
            (-0.4, -0.17),
            (0.4, -0.17),
            (0.4, -0.9),
            (0.75, -0.9),
            (0.75, 0.9),
            (0.4, 0.9),
            (0.4, 0.17),
            (-0.4, 0.17),
            (-0.4, 0.9),
            (-0.75, 0.9),
        ]),
        "bolt" => Figure::Poly(vec![
            (-0.2, -1.0),
            (0.5, -1.0),
            (0.12, -0.15),
            (0.5, -0.15),
            (-0.35, 1.0),
            (-0.05, 0.12),
            (-0.45, 0.12),
        ]),
        "cloud" => Figure::Union(vec![
            Figure::Disc {
                x: -0.5,
                y: 0.15,
                r: 0.38,
            },
            Figure::Disc {
                x: -0.05,
                y: -0.15,
                r: 0.48,
            },
            Figure::Disc {
                x: 0.5,
                y: 0.1,
                r: 0.4,
            },
            // A flat base.
            Figure::Poly(vec![(-0.5, 0.13), (0.5, 0.13), (0.5, 0.53), (-0.5, 0.53)]),
        ]),
        other => unreachable!("no OOD figure {other}"),
    }
}

type Colour = [f32; 3];

fn random_colour(rng: &mut Pcg32) -> Colour {
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
fn contrasting(rng: &mut Pcg32, other: &Colour, min_gap: f32) -> Colour {
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

fn lerp(a: &Colour, b: &Colour, t: f32) -> Colour {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

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

/// Per-pixel colour noise of a random strength, then rounding to 8 bits.
fn finish(pixels: &[Colour], rng: &mut Pcg32) -> RgbImage {
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

/// Draws `fig` at a random size, place and rotation on a random background.
fn render_figure(fig: &Figure, rng: &mut Pcg32) -> RgbImage {
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

/// A texture or noise image without any object.
fn texture(variant: &str, rng: &mut Pcg32) -> RgbImage {
    let a = random_colour(rng);
    let b = contrasting(rng, &a, 50.0);
    let pixels = texture_pixels(variant, &a, &b, rng);
    finish(&pixels, rng)
}

/// The pixels of a texture between colours `a` and `b`.
fn texture_pixels(variant: &str, a: &Colour, b: &Colour, rng: &mut Pcg32) -> Vec<Colour> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_are_sorted() {
        let mut sorted = CLASSES;
        sorted.sort();
        assert_eq!(sorted, CLASSES);
    }

    #[test]
    fn every_figure_covers_part_of_its_image() {
        // Each class figure fills part, not all, of the square [-0.95, 0.95]^2.
        for (c, class) in CLASSES.iter().enumerate() {
            let fig = class_figure(c);
            let hits = (0..400)
                .filter(|k| {
                    let (u, v) = ((k % 20) as f32 / 10.0 - 0.95, (k / 20) as f32 / 10.0 - 0.95);
                    fig.contains(u, v)
                })
                .count();
            assert!(hits > 40 && hits < 360, "{class}: {hits}");
        }
    }
}
