//! Formats: PIL's conversions to RGB, JPEG decoding as libjpeg-turbo
//! does, damaged files, EXIF orientation.

use super::noise;

use gradnorm_engine::data::image::{decode_rgb, load_rgb};
use image::RgbImage;
use std::path::Path;

/// A minimal PNG writer (stored deflate), so any bit depth and colour type
/// can be written exactly.
fn png(
    width: u32,
    height: u32,
    depth: u8,
    color: u8,
    rows: &[Vec<u8>],
    extra: &[(&[u8; 4], Vec<u8>)],
) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    let raw: Vec<u8> = rows
        .iter()
        .flat_map(|r| std::iter::once(0).chain(r.iter().copied()))
        .collect();
    assert!(raw.len() < 65536);
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    let mut z = vec![0x78, 0x01, 0x01];
    z.extend((raw.len() as u16).to_le_bytes());
    z.extend((!(raw.len() as u16)).to_le_bytes());
    z.extend(&raw);
    z.extend(((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([depth, color, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    for (kind, data) in extra {
        chunk(&mut out, kind, data);
    }
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn be16(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn rgb_row(img: &RgbImage) -> Vec<[u8; 3]> {
    img.pixels().map(|p| p.0).collect()
}

/// Expected values: Pillow 13's `Image.open(f).convert('RGB')` on the same
/// bytes, except 16-bit grey (see its case).
#[test]
fn formats_convert_to_rgb_as_pil_does() {
    let v16 = [0u16, 255, 256, 0x1234, 0x80ff, 65535];
    let palette = (b"PLTE", vec![255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30]);
    let trns = (b"tRNS", vec![0u8, 128]);
    let grey = |v: u8| [v, v, v];
    // (what, file bytes, PIL's RGB)
    type Case = (&'static str, Vec<u8>, Vec<[u8; 3]>);
    let cases: Vec<Case> = vec![
        // 16-bit grey keeps the high byte like every 16-bit image (PIL's
        // I;16 clips at 255 instead: [0, 255, 255, 255, 255, 255] and
        // [10, 200]; a deliberate departure, see `load_rgb`).
        (
            "grey16",
            png(6, 1, 16, 0, &[be16(&v16)], &[]),
            [0, 0, 1, 18, 128, 255].map(grey).to_vec(),
        ),
        (
            "grey16 with tRNS",
            png(
                2,
                1,
                16,
                0,
                &[be16(&[10, 0xc8ff])],
                &[(b"tRNS", be16(&[10]))],
            ),
            vec![grey(0), grey(200)],
        ),
        // Other 16-bit images keep the high byte.
        (
            "grey+alpha16",
            png(
                6,
                1,
                16,
                4,
                &[be16(
                    &v16.iter().flat_map(|&v| [v, 0x1111]).collect::<Vec<_>>(),
                )],
                &[],
            ),
            [0, 0, 1, 18, 128, 255].map(grey).to_vec(),
        ),
        (
            "rgb16",
            png(2, 1, 16, 2, &[be16(&v16)], &[]),
            vec![[0, 0, 1], [18, 128, 255]],
        ),
        (
            "rgba16",
            png(
                2,
                1,
                16,
                6,
                &[be16(&[0, 255, 256, 7, 0x1234, 0x80ff, 65535, 0])],
                &[],
            ),
            vec![[0, 0, 1], [18, 128, 255]],
        ),
        (
            "grey1",
            png(8, 1, 1, 0, &[vec![0b1011_0000]], &[]),
            [255, 0, 255, 255, 0, 0, 0, 0].map(grey).to_vec(),
        ),
        (
            "grey2",
            png(4, 1, 2, 0, &[vec![0b0001_1011]], &[]),
            [0, 85, 170, 255].map(grey).to_vec(),
        ),
        (
            "grey8",
            png(2, 1, 8, 0, &[vec![10, 200]], &[]),
            vec![grey(10), grey(200)],
        ),
        (
            "grey+alpha8",
            png(2, 1, 8, 4, &[vec![10, 0, 200, 255]], &[]),
            vec![grey(10), grey(200)],
        ),
        // Alpha is dropped, not composited.
        (
            "rgba8",
            png(2, 1, 8, 6, &[vec![10, 20, 30, 0, 200, 100, 50, 128]], &[]),
            vec![[10, 20, 30], [200, 100, 50]],
        ),
        (
            "palette8",
            png(
                4,
                1,
                8,
                3,
                &[vec![0, 1, 2, 3]],
                std::slice::from_ref(&palette),
            ),
            vec![[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]],
        ),
        (
            "palette8 with tRNS",
            png(
                4,
                1,
                8,
                3,
                &[vec![0, 1, 2, 3]],
                &[palette.clone(), trns.clone()],
            ),
            vec![[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]],
        ),
        (
            "palette2 with tRNS",
            png(
                4,
                1,
                2,
                3,
                &[vec![0b0001_1011]],
                &[palette.clone(), trns.clone()],
            ),
            vec![[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]],
        ),
    ];
    for (what, bytes, want) in cases {
        let img = decode_rgb(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(rgb_row(&img), want, "{what}");
    }

    // A CMYK JPEG (Adobe inverted, as Photoshop and PIL write it) made once
    // with PIL; flat 8x8 blocks decode exactly in any JPEG decoder.
    let img = load_rgb(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/cmyk.jpg"
    )))
    .unwrap();
    assert_eq!(img.dimensions(), (16, 16));
    let at = |x, y| img.get_pixel(x, y).0;
    assert_eq!(at(0, 0), [255, 255, 255]); // C M Y K = 0 0 0 0
    assert_eq!(at(8, 0), [0, 255, 255]); // 255 0 0 0
    assert_eq!(at(0, 8), [190, 119, 49]); // 40 120 200 30
    assert_eq!(at(8, 8), [53, 51, 49]); // 10 20 30 200
}

/// Sequential JPEGs of every layout the exact decoder handles decode to
/// PIL's pixels bit for bit; a progressive one (the zune-jpeg fallback)
/// comes within a few levels. See tests/data/README.md.
#[test]
fn jpegs_decode_as_libjpeg_turbo() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/jpeg"));
    for name in [
        "s444",
        "s422",
        "s440",
        "s420_restart",
        "s420_scans",
        "s420_narrow",
        "s422_narrow",
        "grey",
        "premature",
        "progressive",
    ] {
        let ours = load_rgb(&dir.join(format!("{name}.jpg"))).unwrap();
        let pil = load_rgb(&dir.join(format!("{name}.png"))).unwrap();
        assert_eq!(ours.dimensions(), pil.dimensions(), "{name}");
        let worst = ours
            .as_raw()
            .iter()
            .zip(pil.as_raw())
            .map(|(&a, &b)| a.abs_diff(b))
            .max()
            .unwrap();
        let allowed = if name == "progressive" { 4 } else { 0 };
        assert!(
            worst <= allowed,
            "{name}: differs from PIL by up to {worst} levels"
        );
    }
}

/// Damaged JPEGs (bytes changed anywhere, headers included, or data cut
/// short before an EOI) decode to something or fail; they never panic.
#[test]
fn damaged_jpegs_never_panic() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/jpeg"));
    let mut seed = 7u32;
    let mut rand = move || {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        seed >> 8
    };
    for name in ["s420_restart", "s420_scans", "s440", "grey"] {
        let good = std::fs::read(dir.join(format!("{name}.jpg"))).unwrap();
        for _ in 0..150 {
            let mut bad = good.clone();
            for _ in 0..1 + rand() % 3 {
                let at = 2 + rand() as usize % (bad.len() - 4);
                bad[at] = rand() as u8;
            }
            if rand() % 4 == 0 {
                let cut = 2 + rand() as usize % (bad.len() - 2);
                bad.truncate(cut);
                bad.extend([0xFF, 0xD9]);
            }
            let _ = decode_rgb(&bad);
        }
    }
}

#[test]
fn exif_orientation_is_not_applied() {
    use image::ImageEncoder;
    // A big-endian TIFF block with one IFD entry: Orientation (0x0112) = 6.
    let exif = [
        b'M', b'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0,
    ];
    let src = image::DynamicImage::ImageRgb8(noise(24, 8, 1));
    let mut bytes = Vec::new();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95);
    enc.set_exif_metadata(exif.to_vec()).unwrap();
    enc.write_image(src.as_bytes(), 24, 8, image::ExtendedColorType::Rgb8)
        .unwrap();
    let img = decode_rgb(&bytes).unwrap();
    assert_eq!(img.dimensions(), (24, 8));
}
