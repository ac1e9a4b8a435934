//! 3x3 stride-1 convolutions (padding 1) over NHWC as Winograd F(2x2, 3x3)
//! (Lavin & Gray, 2016): each 2x2 block of output pixels is computed from
//! its 4x4 input patch with 16 multiplications per channel pair instead of
//! 36, so BiT's stride-1 3x3 convolutions (half the model's arithmetic) do
//! 2.25x fewer multiply-adds. Per task, a block of tiles is transformed
//! (V = Bᵀ d B), multiplied as 16 matrix products [tiles, cin] x [cin, cout]
//! on the packed kernel, and transformed back (Y = Aᵀ M A); the block's
//! buffers stay in cache. The transforms use only additions and halves, so
//! the results stay within a few ulps of the direct convolution.

use super::output::Output;
use super::packed::{matmul_block, PackedB};
use super::Geometry;
use rayon::prelude::*;
use std::cell::RefCell;
use std::mem::MaybeUninit;

/// Tiles per task (about; whole rows of tiles): the block's V and M
/// ([16][tiles][channels] each) stay within L2 and L3.
const TILES: usize = 48;

/// The 16 transformed weight matrices U[ξ] = (G g Gᵀ)[ξ], [cin, cout] each,
/// packed for the kernel.
pub(super) struct Transformed {
    u: Vec<PackedB>,
    cin: usize,
    cout: usize,
}

/// Whether the Winograd path runs this convolution: 3x3, stride 1, same
/// size out as in (padding 1), channels the kernels take.
pub(super) fn applies(g: &Geometry, cin: usize, cout: usize) -> bool {
    g.k == 3
        && g.s == 1
        && (g.pt, g.pl) == (1, 1)
        && (g.ho, g.wo) == (g.h, g.w)
        && cin.is_multiple_of(8)
        && super::packed::usable(cout)
}

impl Transformed {
    /// From weights [3, 3, cin, cout]. G = [[1, 0, 0], [½, ½, ½], [½, -½, ½],
    /// [0, 0, 1]].
    pub(super) fn new(w: &[f32], cin: usize, cout: usize) -> Option<Self> {
        if w.len() != 9 * cin * cout {
            return None;
        }
        let g = |dy: usize, dx: usize, ci: usize| &w[((dy * 3 + dx) * cin + ci) * cout..][..cout];
        let mut u = vec![vec![0f32; cin * cout]; 16];
        let mut t = vec![[0f32; 3]; 4 * cout];
        for ci in 0..cin {
            // t = G g: [4][3] per output channel.
            for co in 0..cout {
                // dx indexes four rows of t at once: a range reads clearer.
                #[allow(clippy::needless_range_loop)]
                for dx in 0..3 {
                    let (a, b, c) = (g(0, dx, ci)[co], g(1, dx, ci)[co], g(2, dx, ci)[co]);
                    t[co][dx] = a;
                    t[cout + co][dx] = 0.5 * (a + b + c);
                    t[2 * cout + co][dx] = 0.5 * (a - b + c);
                    t[3 * cout + co][dx] = c;
                }
            }
            // U = t Gᵀ.
            for i in 0..4 {
                for co in 0..cout {
                    let [a, b, c] = t[i * cout + co];
                    let row = [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
                    for (j, v) in row.into_iter().enumerate() {
                        u[i * 4 + j][ci * cout + co] = v;
                    }
                }
            }
        }
        let u = u
            .iter()
            .map(|m| PackedB::new(m, cin, cout))
            .collect::<Option<Vec<_>>>()?;
        Some(Transformed { u, cin, cout })
    }

    /// (cin, cout).
    pub(super) fn dims(&self) -> (usize, usize) {
        (self.cin, self.cout)
    }
}

thread_local! {
    /// Per thread: a task's V and M blocks, kept between tasks (large
    /// fresh allocations would be zeroed pages every time).
    static BUFFERS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// The convolution of NHWC `x` [n, h, w, cin]: [n, h, w, cout], each band
/// of output rows then finished by `epilogue` (the bias and activation)
/// while it is in cache.
pub(super) fn conv3x3(
    x: &[f32],
    g: &Geometry,
    n: usize,
    t: &Transformed,
    epilogue: &(dyn Fn(&mut [f32]) + Sync),
) -> Vec<f32> {
    let (h, w, cin, cout) = (g.h, g.w, t.cin, t.cout);
    assert!(x.len() == n * h * w * cin);
    assert!(super::simd::has_avx2());
    let tw = w.div_ceil(2);
    // Rows of tiles per task: two output rows each.
    let band = TILES.div_ceil(tw).max(1);
    let zeros = vec![0f32; cin];
    let mut out = Output::new(n * h * w * cout);
    out.par_chunks(h * w * cout)
        .zip(x.par_chunks(h * w * cin))
        .for_each(|(oimg, ximg)| {
            oimg.par_chunks(2 * band * w * cout)
                .enumerate()
                .for_each(|(b, o)| {
                    let y0 = 2 * band * b;
                    let rows = o.len() / (w * cout);
                    let tiles = rows.div_ceil(2) * tw;
                    BUFFERS.with_borrow_mut(|(v, m)| {
                        v.resize(16 * tiles * cin, 0.0);
                        m.clear();
                        m.resize(16 * tiles * cout, 0.0);
                        // SAFETY: AVX2 + FMA present (asserted); every pointer
                        // the transforms form is checked in them, and `output`
                        // writes every value of the band.
                        unsafe { input(ximg, g, cin, y0, rows, tiles, &zeros, v) };
                        for (xi, u) in t.u.iter().enumerate() {
                            let c = &mut m[xi * tiles * cout..][..tiles * cout];
                            matmul_block(c, &v[xi * tiles * cin..][..tiles * cin], cin, u);
                        }
                        let o = unsafe { o.written_by(|o| output(m, g, cout, rows, tiles, o)) };
                        epilogue(o);
                    });
                });
        });
    out.finish()
}

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// V[ξ][t][ci] = (Bᵀ d B)[ξ] for the tiles of output rows y0..y0 + rows
/// (Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]).
///
/// Safety: AVX2 present; `v` holds 16 x tiles x cin; cin % 8 == 0.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn input(
    img: &[f32],
    g: &Geometry,
    cin: usize,
    y0: usize,
    rows: usize,
    tiles: usize,
    zeros: &[f32],
    v: &mut [f32],
) {
    let (h, w) = (g.h, g.w);
    let tw = w.div_ceil(2);
    assert!(v.len() >= 16 * tiles * cin && zeros.len() >= cin && img.len() == h * w * cin);
    assert!(cin.is_multiple_of(8) && tiles == rows.div_ceil(2) * tw);
    for t in 0..tiles {
        let (ty, tx) = (t / tw, t % tw);
        // The 4x4 patch starts one pixel up and left of the tile.
        let mut src = [zeros.as_ptr(); 16];
        for r in 0..4 {
            let Some(iy) = (y0 + 2 * ty + r).checked_sub(1).filter(|&y| y < h) else {
                continue;
            };
            for col in 0..4 {
                if let Some(ix) = (2 * tx + col).checked_sub(1).filter(|&x| x < w) {
                    src[r * 4 + col] = img.as_ptr().add((iy * w + ix) * cin);
                }
            }
        }
        let dst = v.as_mut_ptr().add(t * cin);
        let stride = tiles * cin;
        for c in (0..cin).step_by(8) {
            let d = |i: usize| _mm256_loadu_ps(src[i].add(c));
            let mut tt = [_mm256_setzero_ps(); 16];
            for j in 0..4 {
                let (d0, d1, d2, d3) = (d(j), d(4 + j), d(8 + j), d(12 + j));
                tt[j] = _mm256_sub_ps(d0, d2);
                tt[4 + j] = _mm256_add_ps(d1, d2);
                tt[8 + j] = _mm256_sub_ps(d2, d1);
                tt[12 + j] = _mm256_sub_ps(d1, d3);
            }
            for i in 0..4 {
                let (t0, t1, t2, t3) = (tt[4 * i], tt[4 * i + 1], tt[4 * i + 2], tt[4 * i + 3]);
                let row = [
                    _mm256_sub_ps(t0, t2),
                    _mm256_add_ps(t1, t2),
                    _mm256_sub_ps(t2, t1),
                    _mm256_sub_ps(t1, t3),
                ];
                for (j, val) in row.into_iter().enumerate() {
                    _mm256_storeu_ps(dst.add((4 * i + j) * stride + c), val);
                }
            }
        }
    }
}

/// out pixels of rows 0..rows (of this band) = (Aᵀ M A) per tile
/// (Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]), those inside the image: every
/// value of `out` is written.
///
/// Safety: AVX2 present; `m` holds 16 x tiles x cout; cout % 8 == 0.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn output(
    m: &[f32],
    g: &Geometry,
    cout: usize,
    rows: usize,
    tiles: usize,
    out: &mut [MaybeUninit<f32>],
) {
    let w = g.w;
    let tw = w.div_ceil(2);
    assert!(m.len() >= 16 * tiles * cout && out.len() == rows * w * cout);
    assert!(cout.is_multiple_of(8) && tiles == rows.div_ceil(2) * tw);
    let stride = tiles * cout;
    for t in 0..tiles {
        let (ty, tx) = (t / tw, t % tw);
        let src = m.as_ptr().add(t * cout);
        for c in (0..cout).step_by(8) {
            let l = |i: usize| _mm256_loadu_ps(src.add(i * stride + c));
            let mut s = [_mm256_setzero_ps(); 8];
            for j in 0..4 {
                let (m0, m1, m2, m3) = (l(j), l(4 + j), l(8 + j), l(12 + j));
                s[j] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
                s[4 + j] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
            }
            for a in 0..2 {
                let y = 2 * ty + a;
                if y >= rows {
                    continue;
                }
                let (s0, s1, s2, s3) = (s[4 * a], s[4 * a + 1], s[4 * a + 2], s[4 * a + 3]);
                let vals = [
                    _mm256_add_ps(_mm256_add_ps(s0, s1), s2),
                    _mm256_sub_ps(_mm256_sub_ps(s1, s2), s3),
                ];
                for (b, val) in vals.into_iter().enumerate() {
                    let x = 2 * tx + b;
                    if x < w {
                        let at = out.as_mut_ptr().add((y * w + x) * cout + c);
                        _mm256_storeu_ps(at.cast(), val);
                    }
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn input(
    _: &[f32],
    _: &Geometry,
    _: usize,
    _: usize,
    _: usize,
    _: usize,
    _: &[f32],
    _: &mut [f32],
) {
    unreachable!("Winograd needs AVX2")
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn output(
    _: &[f32],
    _: &Geometry,
    _: usize,
    _: usize,
    _: usize,
    _: &mut [MaybeUninit<f32>],
) {
    unreachable!("Winograd needs AVX2")
}
