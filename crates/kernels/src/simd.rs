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

/// Whether the AVX-512F product kernel can run (AVX2 + FMA as well: the
/// code around it uses them).
#[inline]
pub(super) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx2() && std::arch::is_x86_feature_detected!("avx512f")
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

/// erf in f32 as a rational function of x (XLA's and Eigen's `ErfImpl32`
/// coefficients, inputs clamped to [-4, 4], beyond which erf is ±1 in
/// f32): mul, add and div only, so a loop of it vectorizes.
#[inline(always)]
pub(super) fn erf(x: f32) -> f32 {
    const ALPHA: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_6e-3,
        -1.609_603_3e-2,
    ];
    const BETA: [f32; 5] = [
        -1.456_607_2e-5,
        -2.133_740_6e-4,
        -1.682_827e-3,
        -7.373_329e-3,
        -1.426_474e-2,
    ];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = ALPHA[1..].iter().fold(ALPHA[0], |p, &a| p * x2 + a) * x;
    let q = BETA[1..].iter().fold(BETA[0], |q, &b| q * x2 + b);
    p / q
}

/// `out = x Φ(x)`, the exact GELU (`torch.nn.GELU()`'s default).
#[inline(always)]
pub(super) fn gelu_body(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
    }
}
avx2_variant!(gelu => gelu_body(x: &[f32], out: &mut [f32]));

/// [`gelu`] in place: the same arithmetic per value.
#[inline(always)]
pub(super) fn gelu_in_place_body(v: &mut [f32]) {
    for v in v {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}
avx2_variant!(gelu_in_place => gelu_in_place_body(v: &mut [f32]));

/// e^x in f32 (Cephes' expf: x = n ln 2 + r with ln 2 in two parts, a
/// degree-6 polynomial in r, 2^n through the exponent bits), for
/// x in [-87, 88]; within 2 ulp. Floor, casts and shifts only, so a loop of
/// it vectorizes (`f32::exp` is a call per value).
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ]
    .iter()
    .fold(0.0f32, |p, &c| p * r + c);
    let p = p * r * r + r + 1.0;
    p * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

/// One softmax row in place over `row`, its inputs scaled by `scale`:
/// `e^(scale (x - max)) / sum`. The max and the sum go in eight lanes:
/// LLVM keeps a float reduction in order, so one running value would stay
/// scalar.
#[inline(always)]
pub(super) fn softmax_row_body(row: &mut [f32], scale: f32) {
    let lanes = |row: &[f32], init: f32, f: fn(f32, f32) -> f32| {
        let mut acc = [init; 8];
        let mut chunks = row.chunks_exact(8);
        for c in &mut chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a = f(*a, v);
            }
        }
        chunks
            .remainder()
            .iter()
            .chain(&acc)
            .fold(init, |a, &v| f(a, v))
    };
    let max = lanes(row, f32::NEG_INFINITY, f32::max);
    for v in row.iter_mut() {
        *v = exp((*v - max) * scale);
    }
    let inv = 1.0 / lanes(row, 0.0, |a, v| a + v);
    for v in row.iter_mut() {
        *v *= inv;
    }
}
avx2_variant!(softmax_row => softmax_row_body(row: &mut [f32], scale: f32));

/// ReLU in place. A select, not `max` (a NaN stays NaN, as in PyTorch) and
/// not a conditional store (which stays scalar).
#[inline(always)]
pub(super) fn relu_body(v: &mut [f32]) {
    for v in v {
        *v = if *v < 0.0 { 0.0 } else { *v };
    }
}
avx2_variant!(relu => relu_body(v: &mut [f32]));

/// ReLU6 in place.
#[inline(always)]
pub(super) fn relu6_body(v: &mut [f32]) {
    for v in v {
        *v = v.clamp(0.0, 6.0);
    }
}
avx2_variant!(relu6 => relu6_body(v: &mut [f32]));
