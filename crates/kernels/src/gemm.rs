//! The matrix products of the kernels, on the gemm crate directly.

/// `dst := dst + lhs x rhs` with row-major [m, k] lhs, [m, n] dst and a rhs
/// [k, n] read with strides (row `rhs_rs`, column `rhs_cs`).
pub(super) fn matmul_acc(
    dst: &mut [f32],
    lhs: &[f32],
    rhs: &[f32],
    mkn: (usize, usize, usize),
    rhs_rs: usize,
    rhs_cs: usize,
) {
    let threads = gemm::Parallelism::Rayon(rayon::current_num_threads());
    matmul_acc_par(dst, lhs, rhs, mkn, rhs_rs, rhs_cs, threads)
}

/// [`matmul_acc`] with the given parallelism (`None` inside tasks that
/// already run in parallel).
pub(super) fn matmul_acc_par(
    dst: &mut [f32],
    lhs: &[f32],
    rhs: &[f32],
    (m, k, n): (usize, usize, usize),
    rhs_rs: usize,
    rhs_cs: usize,
    parallelism: gemm::Parallelism,
) {
    assert!(dst.len() == m * n && lhs.len() == m * k && rhs.len() == k * n);
    assert!((k - 1) * rhs_rs + (n - 1) * rhs_cs < rhs.len());
    // SAFETY: the asserts bound every index gemm reads or writes.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            true,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}
