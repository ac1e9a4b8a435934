//! Random bytes and random truncations or corruptions of real JPEG, PNG,
//! checkpoint, config and list files, fed to the readers: each must return
//! (an image or an error), never panic. Case counts are bounded so the
//! module stays within seconds.

use gradnorm_core::run::file as config;
use gradnorm_engine::data::image::decode_rgb;
use gradnorm_engine::data::Dataset;
use gradnorm_engine::weights;
use proptest::prelude::*;
use std::path::PathBuf;
use std::sync::OnceLock;

const DEMO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/checkpoints/demo/bit-demo.safetensors"
);

/// Real image files: encoded here (baseline JPEG, PNG of several colour
/// types) plus the torchvision fixture's PNGs when ../shared is present.
fn images() -> &'static [Vec<u8>] {
    static IMAGES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let rgb = image::RgbImage::from_fn(24, 17, |x, y| {
            image::Rgb([(x * 10) as u8, (y * 14) as u8, ((x ^ y) * 9) as u8])
        });
        let mut out = Vec::new();
        for (img, format) in [
            (
                image::DynamicImage::ImageRgb8(rgb.clone()),
                image::ImageFormat::Jpeg,
            ),
            (
                image::DynamicImage::ImageRgb8(rgb.clone()),
                image::ImageFormat::Png,
            ),
            (
                image::DynamicImage::ImageLuma16(image::ImageBuffer::from_fn(9, 5, |x, y| {
                    image::Luma([(x * 5000 + y) as u16])
                })),
                image::ImageFormat::Png,
            ),
            (
                image::DynamicImage::ImageRgba8(image::RgbaImage::from_fn(7, 7, |x, _| {
                    image::Rgba([x as u8 * 30, 0, 9, 128])
                })),
                image::ImageFormat::Png,
            ),
        ] {
            let mut buf = std::io::Cursor::new(Vec::new());
            img.write_to(&mut buf, format).unwrap();
            out.push(buf.into_inner());
        }
        let shared =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/torchvision/images");
        if let Ok(dir) = std::fs::read_dir(shared) {
            for e in dir.flatten().take(4) {
                if let Ok(b) = std::fs::read(e.path()) {
                    if b.len() < 2_000_000 {
                        out.push(b);
                    }
                }
            }
        }
        out
    })
}

fn demo_checkpoint() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| std::fs::read(DEMO).unwrap())
}

const CONFIG: &str = r#"batch = 4
image_size = 32
device = "cpu"
dtype = "f16"
limit = 3
methods = [{ method = "msp" }, { method = "odin", temperature = 1000.0, epsilon = 0.0 }, { method = "gradnorm", temperature = 1.0 }]

[model]
checkpoint = "checkpoints/demo/bit-demo.safetensors"

[id]
name = "id"
path = "dataset/demo/id"

[[ood]]
name = "textures"
path = "dataset/demo/textures"
root = "dataset"
"#;

fn write_temp(bytes: &[u8], name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

#[test]
fn the_seed_files_are_read() {
    for b in images() {
        decode_rgb(b).unwrap();
    }
    weights::read(std::path::Path::new(DEMO)).unwrap();
    config::parse(CONFIG).unwrap();
}

proptest! {
    #![proptest_config(cases(96))]

    #[test]
    fn images_from_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = decode_rgb(&bytes);
    }

    #[test]
    fn images_with_a_real_header_then_noise(
        which in any::<prop::sample::Index>(),
        keep in 0usize..400,
        noise in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let real = which.get(images());
        let mut bytes = real[..keep.min(real.len())].to_vec();
        bytes.extend(noise);
        let _ = decode_rgb(&bytes);
    }

    #[test]
    fn truncated_images(which in any::<prop::sample::Index>(), cut in 0.0f64..1.0) {
        let real = which.get(images());
        let _ = decode_rgb(&real[..(real.len() as f64 * cut) as usize]);
    }

    #[test]
    fn corrupted_images(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12),
    ) {
        let mut bytes = which.get(images()).clone();
        for (at, v) in edits {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        let _ = decode_rgb(&bytes);
    }
}

proptest! {
    #![proptest_config(cases(32))]

    #[test]
    fn truncated_checkpoints(cut in 0.0f64..1.0) {
        let real = demo_checkpoint();
        let (_dir, path) = write_temp(&real[..(real.len() as f64 * cut) as usize], "c.safetensors");
        prop_assert!(weights::read(&path).is_err());
    }

    #[test]
    fn checkpoints_with_a_corrupted_header(
        edits in proptest::collection::vec((0usize..2048, any::<u8>()), 1..8),
    ) {
        let mut bytes = demo_checkpoint().to_vec();
        for (at, v) in edits {
            bytes[at] = v;
        }
        let (_dir, path) = write_temp(&bytes, "c.safetensors");
        let _ = weights::read(&path);
    }

    #[test]
    fn checkpoints_from_random_bytes(
        magic in prop_oneof![
            Just(b"PK\x03\x04".to_vec()),
            Just(vec![0x80, 0x02]),
            Just(b"\x20\0\0\0\0\0\0\0{".to_vec()),
            Just(Vec::new()),
        ],
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut all = magic;
        all.extend(bytes);
        let (_dir, path) = write_temp(&all, "c.pth");
        prop_assert!(weights::read(&path).is_err());
    }

    #[test]
    fn list_files_from_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let (_dir, path) = write_temp(&bytes, "list.txt");
        let _ = Dataset::open(&path, None);
    }
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn truncated_configs(cut in 0usize..CONFIG.len()) {
        let mut cut = cut;
        while !CONFIG.is_char_boundary(cut) {
            cut -= 1;
        }
        let _ = config::parse(&CONFIG[..cut]);
    }

    #[test]
    fn configs_with_a_line_replaced(line in 0usize..20, text in "\\PC{0,40}") {
        let edited: Vec<&str> = CONFIG
            .lines()
            .enumerate()
            .map(|(i, l)| if i == line { text.as_str() } else { l })
            .collect();
        let _ = config::parse(&edited.join("\n"));
    }

    #[test]
    fn configs_from_random_text(text in "\\PC{0,200}") {
        let _ = config::parse(&text);
    }
}
