//! The demo's images: ten classes of shapes (in-distribution) and three OOD
//! sets of graded difficulty, drawn with anti-aliasing on varied backgrounds
//! with noise. Every image is a pure function of (seed, stream, index).
//!
//! The committed demo weights depend on each image's order of random draws:
//! `figure` holds the shapes, `paint` the colours, backgrounds and the
//! anti-aliased rasterizer, `texture` the texture patterns.

mod colour;
mod figure;
mod paint;
mod texture;

use crate::rng::{derive, Pcg32};
use figure::{class_figure, ood_figure};
use image::RgbImage;
use paint::render_figure;
use texture::texture;

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
