//! Chroma upsampling (jdsample.c's "fancy" filters) and the fixed-point
//! YCbCr -> RGB conversion (jdcolor.c).

use super::Component;

/// Output row `y` of chroma component `c` upsampled by (mh, mv) into
/// `out` (at least `c.width * mh` long), as libjpeg-turbo's "fancy"
/// upsamplers do: triangle filters with their roundings, edge samples
/// replicated, and plain replication for chroma at most 2 samples wide.
pub(super) fn upsample_row(c: &Component, mh: usize, mv: usize, y: usize, out: &mut [u8]) {
    let row = |i: usize| &c.plane[i * c.stride..i * c.stride + c.width];
    let w = c.width;
    match (mh, mv) {
        (1, 1) => out[..w].copy_from_slice(row(y)),
        (2, 1) => {
            let r = row(y);
            if w > 2 {
                out[0] = r[0];
                out[1] = ((r[0] as u32 * 3 + r[1] as u32 + 2) >> 2) as u8;
                for x in 1..w - 1 {
                    let v = r[x] as u32 * 3;
                    out[2 * x] = ((v + r[x - 1] as u32 + 1) >> 2) as u8;
                    out[2 * x + 1] = ((v + r[x + 1] as u32 + 2) >> 2) as u8;
                }
                out[2 * w - 2] = ((r[w - 1] as u32 * 3 + r[w - 2] as u32 + 1) >> 2) as u8;
                out[2 * w - 1] = r[w - 1];
            } else {
                for x in 0..w {
                    out[2 * x] = r[x];
                    out[2 * x + 1] = r[x];
                }
            }
        }
        (1, 2) | (2, 2) => {
            let near = y / 2;
            // The row above (even output rows) or below (odd ones); at the
            // image's edges the nearest row itself.
            let far = if y.is_multiple_of(2) {
                near.saturating_sub(1)
            } else {
                (near + 1).min(c.height - 1)
            };
            let (a, b) = (row(near), row(far));
            if mh == 1 {
                let bias = if y.is_multiple_of(2) { 1 } else { 2 };
                for x in 0..w {
                    out[x] = ((a[x] as u32 * 3 + b[x] as u32 + bias) >> 2) as u8;
                }
            } else if w > 2 {
                let col = |x: usize| a[x] as u32 * 3 + b[x] as u32;
                let (mut last, mut this) = (col(0), col(0));
                out[0] = ((this * 4 + 8) >> 4) as u8;
                for x in 0..w - 1 {
                    let next = col(x + 1);
                    if x > 0 {
                        out[2 * x] = ((this * 3 + last + 8) >> 4) as u8;
                    }
                    out[2 * x + 1] = ((this * 3 + next + 7) >> 4) as u8;
                    last = this;
                    this = next;
                }
                out[2 * w - 2] = ((this * 3 + last + 8) >> 4) as u8;
                out[2 * w - 1] = ((this * 4 + 7) >> 4) as u8;
            } else {
                // Plain replication, no vertical filtering.
                for x in 0..w {
                    out[2 * x] = a[x];
                    out[2 * x + 1] = a[x];
                }
            }
        }
        _ => unreachable!("sampling checked in frame()"),
    }
}

/// libjpeg's YCbCr -> RGB tables (16-bit fixed point).
pub(super) struct YccTables {
    cr_r: [i32; 256],
    cb_b: [i32; 256],
    cr_g: [i32; 256],
    cb_g: [i32; 256],
}

impl YccTables {
    pub(super) fn new() -> Self {
        const ONE_HALF: i64 = 1 << 15;
        let fix = |x: f64| (x * 65536.0 + 0.5) as i64;
        let t = |f: &dyn Fn(i64) -> i64| std::array::from_fn(|i| f(i as i64 - 128) as i32);
        YccTables {
            cr_r: t(&|x| (fix(1.40200) * x + ONE_HALF) >> 16),
            cb_b: t(&|x| (fix(1.77200) * x + ONE_HALF) >> 16),
            cr_g: t(&|x| -fix(0.71414) * x),
            cb_g: t(&|x| -fix(0.34414) * x + ONE_HALF),
        }
    }

    #[inline]
    pub(super) fn rgb(&self, y: u8, cb: u8, cr: u8) -> [u8; 3] {
        let y = y as i32;
        let (cb, cr) = (cb as usize, cr as usize);
        let g = (self.cb_g[cb] + self.cr_g[cr]) >> 16;
        [
            (y + self.cr_r[cr]).clamp(0, 255) as u8,
            (y + g).clamp(0, 255) as u8,
            (y + self.cb_b[cb]).clamp(0, 255) as u8,
        ]
    }
}
