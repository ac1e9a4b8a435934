//! The SIMD code of the kernels, in one place: explicit AVX2 + FMA
//! intrinsics for the inner products (`fma`, `add`, `gemv`), and plain loops
//! compiled a second time with AVX2 + FMA enabled (`avx2_variant!`) for the
//! GroupNorm passes. Everything falls back to scalar code elsewhere.

/// `dst[i] += a[i] * k[i]`. The kernels spend their time here, so on
/// x86-64 with AVX2 and FMA it is explicit 8-wide code: the crate builds
/// with little optimization in tests, where a plain loop stays scalar.
#[inline]
pub(super) fn fma(dst: &mut [f32], a: &[f32], k: &[f32]) {
    let n = dst.len();
    let (a, k) = (&a[..n], &k[..n]);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the features are present; all three slices hold n values.
        unsafe { avx2::fma(dst, a, k) };
        return;
    }
    for ((d, &a), &k) in dst.iter_mut().zip(a).zip(k) {
        *d += a * k;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Safety: AVX2 and FMA present, `a` and `k` at least as long as `d`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma(d: &mut [f32], a: &[f32], k: &[f32]) {
        let n = d.len();
        let (dp, ap, kp) = (d.as_mut_ptr(), a.as_ptr(), k.as_ptr());
        let mut i = 0;
        while i + 8 <= n {
            let v = _mm256_fmadd_ps(
                _mm256_loadu_ps(ap.add(i)),
                _mm256_loadu_ps(kp.add(i)),
                _mm256_loadu_ps(dp.add(i)),
            );
            _mm256_storeu_ps(dp.add(i), v);
            i += 8;
        }
        while i < n {
            *dp.add(i) += *ap.add(i) * *kp.add(i);
            i += 1;
        }
    }

    /// Safety: AVX2 present, `a` at least as long as `d`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn add(d: &mut [f32], a: &[f32], relu6: bool) {
        let n = d.len();
        let (dp, ap) = (d.as_mut_ptr(), a.as_ptr());
        let (lo, hi) = (_mm256_setzero_ps(), _mm256_set1_ps(6.0));
        let mut i = 0;
        while i + 8 <= n {
            let mut v = _mm256_add_ps(_mm256_loadu_ps(dp.add(i)), _mm256_loadu_ps(ap.add(i)));
            if relu6 {
                v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
            }
            _mm256_storeu_ps(dp.add(i), v);
            i += 8;
        }
        while i < n {
            let mut v = *dp.add(i) + *ap.add(i);
            if relu6 {
                v = v.clamp(0.0, 6.0);
            }
            *dp.add(i) = v;
            i += 1;
        }
    }

    /// Safety: AVX2 and FMA present, `w` holds p.len() rows of d.len().
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gemv(d: &mut [f32], p: &[f32], w: &[f32]) {
        let cout = d.len();
        let (dp, wp) = (d.as_mut_ptr(), w.as_ptr());
        let mut o = 0;
        // Four independent accumulators hide the FMA latency.
        while o + 32 <= cout {
            let mut acc = [
                _mm256_loadu_ps(dp.add(o)),
                _mm256_loadu_ps(dp.add(o + 8)),
                _mm256_loadu_ps(dp.add(o + 16)),
                _mm256_loadu_ps(dp.add(o + 24)),
            ];
            for (j, &a) in p.iter().enumerate() {
                let av = _mm256_set1_ps(a);
                let row = wp.add(j * cout + o);
                for (r, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm256_fmadd_ps(av, _mm256_loadu_ps(row.add(8 * r)), *acc);
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                _mm256_storeu_ps(dp.add(o + 8 * r), *acc);
            }
            o += 32;
        }
        while o + 8 <= cout {
            let mut acc = _mm256_loadu_ps(dp.add(o));
            for (j, &a) in p.iter().enumerate() {
                acc = _mm256_fmadd_ps(
                    _mm256_set1_ps(a),
                    _mm256_loadu_ps(wp.add(j * cout + o)),
                    acc,
                );
            }
            _mm256_storeu_ps(dp.add(o), acc);
            o += 8;
        }
        while o < cout {
            for (j, &a) in p.iter().enumerate() {
                *dp.add(o) += a * *wp.add(j * cout + o);
            }
            o += 1;
        }
    }
}

/// `dst[i] += a[i]`, then clamped to [0, 6] if `relu6`.
#[inline]
pub(super) fn add(dst: &mut [f32], a: &[f32], relu6: bool) {
    let a = &a[..dst.len()];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: as in `fma`.
        unsafe { avx2::add(dst, a, relu6) };
        return;
    }
    for (d, &a) in dst.iter_mut().zip(a) {
        *d += a;
        if relu6 {
            *d = d.clamp(0.0, 6.0);
        }
    }
}

/// `out[o] += sum_j p[j] * w[j * cout + o]` for one output pixel.
#[inline]
pub(super) fn gemv(out: &mut [f32], p: &[f32], w: &[f32]) {
    let cout = out.len();
    let w = &w[..p.len() * cout];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: as in `fma`; w holds p.len() rows of cout.
        unsafe { avx2::gemv(out, p, w) };
        return;
    }
    for (&a, wj) in p.iter().zip(w.chunks_exact(cout)) {
        for (o, &k) in out.iter_mut().zip(wj) {
            *o += a * k;
        }
    }
}

pub(super) fn relu6(v: &mut [f32]) {
    for v in v {
        *v = v.clamp(0.0, 6.0);
    }
}

/// Whether the AVX2 + FMA loops below can run.
#[inline]
pub(super) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `$name` running `$body` (a plain loop over slices, marked
/// `#[inline(always)]`) compiled for AVX2 + FMA when the CPU has them: the
/// crate's target stops at SSE2, and LLVM vectorizes the loop 8-wide only
/// inside a function that enables the features.
macro_rules! avx2_variant {
    ($name:ident => $body:ident ($($arg:ident: $ty:ty),*)) => {
        pub(super) fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if has_avx2() {
                    // SAFETY: the features are present.
                    return unsafe { fast($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

/// Per channel of `c`: sum and sum of squares of the pixels `x` (f64).
#[inline(always)]
pub(super) fn moments_body(x: &[f32], c: usize, acc: &mut [f64]) {
    let (s, q) = acc.split_at_mut(c);
    for px in x.chunks_exact(c) {
        for ((s, q), &v) in s.iter_mut().zip(q.iter_mut()).zip(px) {
            let v = v as f64;
            *s += v;
            *q += v * v;
        }
    }
}
avx2_variant!(moments => moments_body(x: &[f32], c: usize, acc: &mut [f64]));

/// Per channel: sums of x, x², d and d x, where d is the gradient `g`
/// passed by the ReLU (output `y` > 0).
#[inline(always)]
pub(super) fn grad_moments_body(x: &[f32], g: &[f32], y: &[f32], c: usize, acc: &mut [f64]) {
    let (sx, rest) = acc.split_at_mut(c);
    let (sxx, rest) = rest.split_at_mut(c);
    let (sd, sdx) = rest.split_at_mut(c);
    for ((px, pg), py) in x
        .chunks_exact(c)
        .zip(g.chunks_exact(c))
        .zip(y.chunks_exact(c))
    {
        for k in 0..c {
            let v = px[k] as f64;
            let d = if py[k] > 0.0 { pg[k] as f64 } else { 0.0 };
            sx[k] += v;
            sxx[k] += v * v;
            sd[k] += d;
            sdx[k] += d * v;
        }
    }
}
avx2_variant!(grad_moments => grad_moments_body(
    x: &[f32], g: &[f32], y: &[f32], c: usize, acc: &mut [f64]
));

/// `out = max(x * scale + shift, 0)` per channel.
#[inline(always)]
pub(super) fn affine_relu_body(x: &[f32], scale: &[f32], shift: &[f32], out: &mut [f32]) {
    let c = scale.len();
    for (o, px) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
        for k in 0..c {
            o[k] = (px[k] * scale[k] + shift[k]).max(0.0);
        }
    }
}
avx2_variant!(affine_relu => affine_relu_body(
    x: &[f32], scale: &[f32], shift: &[f32], out: &mut [f32]
));

/// The GroupNorm + ReLU input gradient: `dx = a d + b x + c` per channel,
/// d the gradient passed by the ReLU.
#[inline(always)]
pub(super) fn gn_grad_body(x: &[f32], g: &[f32], y: &[f32], abc: &[f32], dx: &mut [f32]) {
    let c = abc.len() / 3;
    let (a, rest) = abc.split_at(c);
    let (b, cc) = rest.split_at(c);
    for (((o, px), pg), py) in dx
        .chunks_exact_mut(c)
        .zip(x.chunks_exact(c))
        .zip(g.chunks_exact(c))
        .zip(y.chunks_exact(c))
    {
        for k in 0..c {
            let d = if py[k] > 0.0 { pg[k] } else { 0.0 };
            o[k] = a[k] * d + b[k] * px[k] + cc[k];
        }
    }
}
avx2_variant!(gn_grad => gn_grad_body(
    x: &[f32], g: &[f32], y: &[f32], abc: &[f32], dx: &mut [f32]
));
