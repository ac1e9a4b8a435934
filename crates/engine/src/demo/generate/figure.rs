//! The demo's shapes: figures in local coordinates, the ten classes' and
//! the OOD sets'.

use super::CLASSES;
use crate::rng::Pcg32;
use std::f32::consts::{PI, TAU};

/// A figure in local coordinates, roughly within the unit disc.
#[derive(Debug, Clone)]
pub(super) enum Figure {
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
    pub(super) fn contains(&self, u: f32, v: f32) -> bool {
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

pub(super) fn class_figure(class: usize) -> Figure {
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

pub(super) fn ood_figure(variant: &str, rng: &mut Pcg32) -> Figure {
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
