//! Our own f32 matrix product for the convolutions' and linear layers'
//! shapes: the weights packed into panels of 16 columns ([n / 16][k][16],
//! one contiguous run per panel) and register-blocked microkernels: 6 x 16
//! on AVX2 + FMA (12 accumulators, two weight loads and six broadcasts per
//! step), 12 x 32 on AVX-512 (two neighbouring panels, 24 accumulators,
//! each broadcast feeding two multiply-adds; 1.5-1.7x AVX2 per core on
//! `bench_isas`'s shapes). Blocked so the weight panel slices stay in L1,
//! the activation block (rows x KC) in L2, and the block of `c` (rows x NC)
//! in L2 across the depth passes. Activations are read in place (row-major,
//! any row stride), so an im2col block or a tensor's pixels feed it without
//! a copy. Both kernels accumulate each output over the depth in the same
//! order with FMA, so they give the same bits.
//!
//! The gemm crate serves every shape this does not (column counts that are
//! not a multiple of 16, CPUs without AVX2 + FMA).

/// Columns per panel: two AVX2 registers.
const NR: usize = 16;
/// Rows per microkernel call (AVX2: 12 accumulators).
const MR: usize = 6;
/// Rows per AVX-512 microkernel call: 12 accumulators of 16 floats.
const MR512: usize = 12;
/// Depth per pass: a panel slice of KC x 16 floats is 16 KB (L1).
const KC: usize = 256;
/// Depth per pass of the AVX-512 kernel: two panel slices (16 KB) and its
/// 12 rows of A (6 KB) in L1, a few percent faster than 256 on most shapes
/// of `bench_isas`.
const KC512: usize = 128;
/// Columns per group: [`MC`] rows of them are 240 KB (L2).
const NC: usize = 256;
/// Rows per parallel task at most: a row block of MC x KC floats is
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
    block_with(isa(), c, a, lda, b)
}

/// Which microkernel runs: AVX-512 where the CPU has it (16-wide
/// registers, twice AVX2's work per instruction), else AVX2.
/// `GRADNORM_CPU_AVX2=1` keeps AVX2 on an AVX-512 CPU, to compare.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Isa {
    Avx2,
    Avx512,
}

fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        let forced = std::env::var_os("GRADNORM_CPU_AVX2").is_some_and(|v| v == "1");
        if !forced && super::simd::has_avx512() {
            Isa::Avx512
        } else {
            Isa::Avx2
        }
    })
}

fn block_with(isa: Isa, c: &mut [f32], a: &[f32], lda: usize, b: &PackedB) {
    let (k, n) = (b.k, b.n);
    let rows = c.len() / n;
    assert!(c.len() == rows * n && lda >= k);
    assert!(rows == 0 || (rows - 1) * lda + k <= a.len());
    assert!(super::simd::has_avx2());
    assert!(isa == Isa::Avx2 || super::simd::has_avx512());
    let panels = n / NR;
    let kc_max = match isa {
        Isa::Avx2 => KC,
        Isa::Avx512 => KC512,
    };
    // Column groups of NC outermost: the group's slice of `c` stays in L2
    // across the depth passes instead of streaming through memory per pass.
    for jc in (0..panels).step_by(NC / NR) {
        let group = jc..panels.min(jc + NC / NR);
        for pc in (0..k).step_by(kc_max) {
            let kc = kc_max.min(k - pc);
            let mut j = group.start;
            while j < group.end {
                // AVX-512 takes two panels at a time where two are left; a
                // last odd panel goes through the AVX2 kernel (the same
                // sums in the same order).
                let wide = isa == Isa::Avx512 && j + 1 < group.end;
                let b0 = b.data[j * k * NR + pc * NR..].as_ptr();
                let mut i = 0;
                while i < rows {
                    let mr = if wide { MR512 } else { MR }.min(rows - i);
                    // SAFETY: AVX2 + FMA (and AVX-512 for its kernels) present
                    // (asserted); rows i..i + mr of `a` hold columns pc..pc + kc
                    // (asserted above), each panel slice kc x 16 floats, and `c`
                    // rows i..i + mr columns j * 16 onwards, 16 per panel taken.
                    unsafe {
                        let ap = a.as_ptr().add(i * lda + pc);
                        let cp = c.as_mut_ptr().add(i * n + j * NR);
                        if wide {
                            let b1 = b0.add(k * NR);
                            avx512_wide_rows(mr, kc, ap, lda, b0, b1, cp, n)
                        } else {
                            avx2_rows(mr, kc, ap, lda, b0, cp, n)
                        }
                    }
                    i += mr;
                }
                j += if wide { 2 } else { 1 };
            }
        }
    }
}

/// Safety: as [`kernel`], for `mr` <= [`MR`] rows.
unsafe fn avx2_rows(
    mr: usize,
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
) {
    match mr {
        6 => kernel::<6>(kc, a, lda, b, c, ldc),
        5 => kernel::<5>(kc, a, lda, b, c, ldc),
        4 => kernel::<4>(kc, a, lda, b, c, ldc),
        3 => kernel::<3>(kc, a, lda, b, c, ldc),
        2 => kernel::<2>(kc, a, lda, b, c, ldc),
        _ => kernel::<1>(kc, a, lda, b, c, ldc),
    }
}

/// Safety: as [`kernel512x2`], for `mr` <= [`MR512`] rows.
#[allow(clippy::too_many_arguments)]
unsafe fn avx512_wide_rows(
    mr: usize,
    kc: usize,
    a: *const f32,
    lda: usize,
    b0: *const f32,
    b1: *const f32,
    c: *mut f32,
    ldc: usize,
) {
    match mr {
        12 => kernel512x2::<12>(kc, a, lda, b0, b1, c, ldc),
        11 => kernel512x2::<11>(kc, a, lda, b0, b1, c, ldc),
        10 => kernel512x2::<10>(kc, a, lda, b0, b1, c, ldc),
        9 => kernel512x2::<9>(kc, a, lda, b0, b1, c, ldc),
        8 => kernel512x2::<8>(kc, a, lda, b0, b1, c, ldc),
        7 => kernel512x2::<7>(kc, a, lda, b0, b1, c, ldc),
        6 => kernel512x2::<6>(kc, a, lda, b0, b1, c, ldc),
        5 => kernel512x2::<5>(kc, a, lda, b0, b1, c, ldc),
        4 => kernel512x2::<4>(kc, a, lda, b0, b1, c, ldc),
        3 => kernel512x2::<3>(kc, a, lda, b0, b1, c, ldc),
        2 => kernel512x2::<2>(kc, a, lda, b0, b1, c, ldc),
        _ => kernel512x2::<1>(kc, a, lda, b0, b1, c, ldc),
    }
}

/// Rows per parallel task over `rows` rows: at most [`MC`], in a number
/// of equal tasks that is a multiple of the threads, so that no thread is
/// left to run a last block alone (ViT-B/16's 1,576 rows at batch 8 are 8
/// tasks of 197, not 6 of 240 and one of 136).
pub(super) fn block_rows(rows: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let tasks = rows.div_ceil(MC).div_ceil(threads) * threads;
    rows.div_ceil(tasks.max(1)).max(1)
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

/// C[M x 32] += A[M x kc] x two neighbouring panel slices (`b0` columns
/// 0..16, `b1` 16..32): two registers per row, so each broadcast of A
/// feeds two multiply-adds.
///
/// Safety: AVX-512F present; the pointers cover those extents.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn kernel512x2<const M: usize>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b0: *const f32,
    b1: *const f32,
    c: *mut f32,
    ldc: usize,
) {
    let mut lo = [_mm512_setzero_ps(); M];
    let mut hi = [_mm512_setzero_ps(); M];
    for r in 0..M {
        lo[r] = _mm512_loadu_ps(c.add(r * ldc));
        hi[r] = _mm512_loadu_ps(c.add(r * ldc + NR));
    }
    let mut rows = [a; M];
    for (r, p) in rows.iter_mut().enumerate() {
        *p = a.add(r * lda);
    }
    for p in 0..kc {
        let v0 = _mm512_loadu_ps(b0.add(p * NR));
        let v1 = _mm512_loadu_ps(b1.add(p * NR));
        for r in 0..M {
            let av = _mm512_set1_ps(*rows[r].add(p));
            lo[r] = _mm512_fmadd_ps(av, v0, lo[r]);
            hi[r] = _mm512_fmadd_ps(av, v1, hi[r]);
        }
    }
    for r in 0..M {
        _mm512_storeu_ps(c.add(r * ldc), lo[r]);
        _mm512_storeu_ps(c.add(r * ldc + NR), hi[r]);
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

/// Never called: [`isa`] is AVX2 off x86-64.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn kernel512x2<const M: usize>(
    _: usize,
    _: *const f32,
    _: usize,
    _: *const f32,
    _: *const f32,
    _: *mut f32,
    _: usize,
) {
    unreachable!("the AVX-512 kernel needs x86-64")
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
        let mut isas = vec![Isa::Avx2];
        if super::super::simd::has_avx512() {
            isas.push(Isa::Avx512);
        } else {
            eprintln!("no AVX-512F: its kernel is not tested");
        }
        // Rows not a multiple of 6, 12 or MC, depth across KC, several panels.
        let shapes = [
            (1, 3, 16, 3),
            (13, 300, 48, 300),
            (MC + 7, 17, 32, 20),
            (25, 5, 16, 9),
            (14, 9, 64, 9),
        ];
        for &(m, k, n, lda) in &shapes {
            let a = values(m * lda, 1);
            let w = values(k * n, 2);
            let init = values(m * n, 3);
            let b = PackedB::new(&w, k, n).unwrap();
            let outs: Vec<Vec<f32>> = isas
                .iter()
                .map(|&isa| {
                    let mut c = init.clone();
                    block_with(isa, &mut c, &a, lda, &b);
                    c
                })
                .collect();
            // The same sums in the same order: the same bits.
            assert!(outs.iter().all(|c| *c == outs[0]), "({m}, {k}, {n})");
            let (c, isa) = (&outs[0], isas[0]);
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = init[i * n + j] as f64
                        + (0..k)
                            .map(|p| a[i * lda + p] as f64 * w[p * n + j] as f64)
                            .sum::<f64>();
                    let got = c[i * n + j] as f64;
                    assert!(
                        (got - want).abs() < 1e-4,
                        "{isa:?} ({m}, {k}, {n}) at ({i}, {j})"
                    );
                }
            }
        }
        let w = values(48, 5);
        assert_eq!(block_rows(0), 1);
        // Whole rounds of tasks: ViT-B/16's 1,576 rows at batch 8.
        let tasks = 1576usize.div_ceil(block_rows(1576));
        assert_eq!(tasks % rayon::current_num_threads(), 0);
        assert!(block_rows(2 * MC + 5) <= MC);
        assert!(PackedB::new(&w, 6, 8).is_none());
    }

    /// Multiply-adds per second of each microkernel on the convolutions'
    /// product shapes, one thread:
    /// `cargo test --release -p gradnorm-kernels bench_isas -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn bench_isas() {
        if !super::super::simd::has_avx512() {
            eprintln!("SKIPPED: no AVX-512F");
            return;
        }
        for &(m, k, n) in &[
            (240, 64, 256),
            (240, 256, 64),
            (240, 576, 128),
            (240, 1024, 256),
            (197, 768, 3072),
        ] {
            let (a, w) = (values(m * k, 6), values(k * n, 7));
            let b = PackedB::new(&w, k, n).unwrap();
            let mut c = vec![0f32; m * n];
            for isa in [Isa::Avx2, Isa::Avx512] {
                let reps = (2e9 / (m * k * n) as f64).ceil() as usize;
                block_with(isa, &mut c, &a, k, &b);
                let t = std::time::Instant::now();
                for _ in 0..reps {
                    block_with(isa, &mut c, &a, k, &b);
                }
                let s = t.elapsed().as_secs_f64();
                let g = (reps * m * k * n) as f64 / s / 1e9;
                eprintln!("{isa:?} m {m} k {k} n {n}: {g:.1} GMAC/s");
            }
        }
    }
}
