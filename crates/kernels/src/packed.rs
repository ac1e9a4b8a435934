//! Our own f32 matrix product for the convolutions' shapes: the weights
//! packed into panels of 16 columns ([n / 16][k][16], one contiguous run per
//! panel) and a register-blocked 6 x 16 AVX2 + FMA microkernel (12
//! accumulators, two weight loads and six broadcasts per step), blocked so a
//! weight panel slice (KC x 16) stays in L1 and the activation block (rows x
//! KC) in L2. Activations are read in place (row-major, any row stride), so
//! an im2col block or a tensor's pixels feed it without a copy.
//!
//! The gemm crate serves every shape this does not (column counts that are
//! not a multiple of 16, CPUs without AVX2 + FMA).

use rayon::prelude::*;

/// Columns per panel: two AVX2 registers.
const NR: usize = 16;
/// Rows per microkernel call.
const MR: usize = 6;
/// Depth per pass: a panel slice of KC x 16 floats is 16 KB (L1).
const KC: usize = 256;
/// Rows per parallel task of [`matmul`]: a row block of MC x KC floats is
/// 240 KB (L2).
pub(super) const MC: usize = 240;

/// A [k, n] row-major matrix (the weights) packed as [n / 16][k][16].
pub(super) struct PackedB {
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl PackedB {
    /// Packs `w` [k, n] (row stride n) when this kernel can multiply it.
    pub(super) fn new(w: &[f32], k: usize, n: usize) -> Option<Self> {
        if !usable(n) || w.len() != k * n || k == 0 {
            return None;
        }
        let mut data = vec![0f32; k * n];
        for (j, panel) in data.chunks_exact_mut(k * NR).enumerate() {
            for (p, dst) in panel.chunks_exact_mut(NR).enumerate() {
                dst.copy_from_slice(&w[p * n + j * NR..][..NR]);
            }
        }
        Some(PackedB { k, n, data })
    }

    /// [k, n].
    pub(super) fn dims(&self) -> (usize, usize) {
        (self.k, self.n)
    }
}

/// Whether `n` columns can go through this kernel on this CPU. Setting
/// `GRADNORM_CPU_GEMM=1` sends every product to the gemm crate (and every
/// convolution to im2col), to compare the two on the same build.
pub(super) fn usable(n: usize) -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let off = *OFF.get_or_init(|| std::env::var_os("GRADNORM_CPU_GEMM").is_some_and(|v| v == "1"));
    n > 0 && n.is_multiple_of(NR) && !off && super::simd::has_avx2()
}

/// `c += a x b` for `rows` rows: `a` row-major with row stride `lda` (its
/// first b.k() columns are read), `c` [rows, b.n()], one thread.
pub(super) fn matmul_block(c: &mut [f32], a: &[f32], lda: usize, b: &PackedB) {
    let (k, n) = (b.k, b.n);
    let rows = c.len() / n;
    assert!(c.len() == rows * n && lda >= k);
    assert!(rows == 0 || (rows - 1) * lda + k <= a.len());
    assert!(super::simd::has_avx2());
    for pc in (0..k).step_by(KC) {
        let kc = KC.min(k - pc);
        for (j, panel) in b.data.chunks_exact(k * NR).enumerate() {
            let bp = panel[pc * NR..].as_ptr();
            let mut i = 0;
            while i < rows {
                let mr = MR.min(rows - i);
                // SAFETY: AVX2 + FMA present (asserted); rows i..i + mr of
                // `a` hold columns pc..pc + kc (asserted above), the panel
                // slice kc x 16 floats, and `c` rows i..i + mr columns
                // j * 16..j * 16 + 16.
                unsafe {
                    let ap = a.as_ptr().add(i * lda + pc);
                    let cp = c.as_mut_ptr().add(i * n + j * NR);
                    match mr {
                        6 => kernel::<6>(kc, ap, lda, bp, cp, n),
                        5 => kernel::<5>(kc, ap, lda, bp, cp, n),
                        4 => kernel::<4>(kc, ap, lda, bp, cp, n),
                        3 => kernel::<3>(kc, ap, lda, bp, cp, n),
                        2 => kernel::<2>(kc, ap, lda, bp, cp, n),
                        _ => kernel::<1>(kc, ap, lda, bp, cp, n),
                    }
                }
                i += mr;
            }
        }
    }
}

/// `c += a x b` over every row, blocks of [`MC`] rows in parallel; `a`
/// row-major [rows, b.k()].
pub(super) fn matmul(c: &mut [f32], a: &[f32], b: &PackedB) {
    let (k, n) = (b.k, b.n);
    c.par_chunks_mut(MC * n)
        .zip(a.par_chunks(MC * k))
        .for_each(|(c, a)| matmul_block(c, a, k, b));
}

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// C[MR x 16] (row stride ldc) += A[MR x kc] (row stride lda) x the panel
/// slice [kc][16].
///
/// Safety: AVX2 + FMA present; the pointers cover those extents.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn kernel<const M: usize>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
) {
    let mut lo = [_mm256_setzero_ps(); M];
    let mut hi = [_mm256_setzero_ps(); M];
    for r in 0..M {
        lo[r] = _mm256_loadu_ps(c.add(r * ldc));
        hi[r] = _mm256_loadu_ps(c.add(r * ldc + 8));
    }
    let mut rows = [a; M];
    for (r, p) in rows.iter_mut().enumerate() {
        *p = a.add(r * lda);
    }
    for p in 0..kc {
        let b0 = _mm256_loadu_ps(b.add(p * NR));
        let b1 = _mm256_loadu_ps(b.add(p * NR + 8));
        for r in 0..M {
            let av = _mm256_broadcast_ss(&*rows[r].add(p));
            lo[r] = _mm256_fmadd_ps(av, b0, lo[r]);
            hi[r] = _mm256_fmadd_ps(av, b1, hi[r]);
        }
    }
    for r in 0..M {
        _mm256_storeu_ps(c.add(r * ldc), lo[r]);
        _mm256_storeu_ps(c.add(r * ldc + 8), hi[r]);
    }
}

/// Never called: [`usable`] is false off x86-64.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn kernel<const M: usize>(
    _: usize,
    _: *const f32,
    _: usize,
    _: *const f32,
    _: *mut f32,
    _: usize,
) {
    unreachable!("the packed kernel needs AVX2")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_the_definition_across_block_edges() {
        if !super::super::simd::has_avx2() {
            eprintln!("SKIPPED: no AVX2 + FMA");
            return;
        }
        // Rows not a multiple of 6 or of MC, depth across KC, several panels.
        for &(m, k, n, lda) in &[(1, 3, 16, 3), (13, 300, 48, 300), (MC + 7, 17, 32, 20)] {
            let a = values(m * lda, 1);
            let w = values(k * n, 2);
            let init = values(m * n, 3);
            let b = PackedB::new(&w, k, n).unwrap();
            let mut c = init.clone();
            matmul_block(&mut c, &a, lda, &b);
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = init[i * n + j] as f64
                        + (0..k)
                            .map(|p| a[i * lda + p] as f64 * w[p * n + j] as f64)
                            .sum::<f64>();
                    let got = c[i * n + j] as f64;
                    assert!((got - want).abs() < 1e-4, "({m}, {k}, {n}) at ({i}, {j})");
                }
            }
        }
        // The parallel form over contiguous rows.
        let (m, k, n) = (2 * MC + 5, 40, 32);
        let (a, w) = (values(m * k, 4), values(k * n, 5));
        let b = PackedB::new(&w, k, n).unwrap();
        let mut c = vec![0f32; m * n];
        matmul(&mut c, &a, &b);
        let mut one = vec![0f32; m * n];
        matmul_block(&mut one, &a, k, &b);
        assert_eq!(c, one);
        assert!(PackedB::new(&w, k * 2, n / 2 + 1).is_none());
    }
}
