//! Helpers the kernels' tests share: deterministic inputs, a direct
//! convolution in f64, comparisons.

use super::Geometry;
use candle_core::{Device, Tensor, Var};
use std::sync::Arc;

pub(super) fn rand(shape: &[usize], seed: u64) -> Tensor {
    // Deterministic values in [-2, 2) without a random-number crate.
    let n: usize = shape.iter().product();
    let mut state = seed;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

pub(super) fn host(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

pub(super) fn arc(t: &Tensor) -> Arc<[f32]> {
    host(t).into()
}

pub(super) fn geometry(h: usize, w: usize, k: usize, s: usize, pt: usize, pl: usize) -> Geometry {
    // Every window that starts inside the (top/left-padded) input.
    let (ho, wo) = ((h - 1 + pt) / s + 1, (w - 1 + pl) / s + 1);
    Geometry {
        h,
        w,
        k,
        s,
        pt,
        pl,
        ho,
        wo,
    }
}

/// Direct definition: out[n,oy,ox,c] = relu6(b[c] + sum over the window
/// of w[dy,dx,ci,c] x[n,ci,oy*s+dy-pt,ox*s+dx-pl]), zero outside, in f64.
/// `depthwise` pairs input channel c with output channel c only.
pub(super) fn direct(
    x: &[f32],
    (n, cin, h, w): (usize, usize, usize, usize),
    wt: &[f32],
    b: &[f32],
    g: &Geometry,
    depthwise: bool,
    nhwc_in: bool,
) -> Vec<f32> {
    let cout = b.len();
    let at = |i: usize, ci: usize, y: usize, xx: usize| {
        if nhwc_in {
            x[((i * h + y) * w + xx) * cin + ci]
        } else {
            x[((i * cin + ci) * h + y) * w + xx]
        }
    };
    let mut out = Vec::new();
    for i in 0..n {
        for oy in 0..g.ho {
            for ox in 0..g.wo {
                for (co, &bias) in b.iter().enumerate() {
                    let mut acc = bias as f64;
                    for dy in 0..g.k {
                        for dx in 0..g.k {
                            let (iy, ix) = (
                                (oy * g.s + dy) as isize - g.pt as isize,
                                (ox * g.s + dx) as isize - g.pl as isize,
                            );
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let cis: Vec<usize> = if depthwise {
                                vec![co]
                            } else {
                                (0..cin).collect()
                            };
                            for ci in cis {
                                let wi = if depthwise {
                                    (dy * g.k + dx) * cout + co
                                } else {
                                    ((dy * g.k + dx) * cin + ci) * cout + co
                                };
                                acc += at(i, ci, iy as usize, ix as usize) as f64 * wt[wi] as f64;
                            }
                        }
                    }
                    out.push(acc.clamp(0.0, 6.0) as f32);
                }
            }
        }
    }
    out
}

pub(super) fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

pub(super) const CASES: [(usize, usize, usize, usize, usize, usize); 6] = [
    // h, w, k, s, pt, pl
    (9, 9, 3, 1, 1, 1),
    (10, 7, 5, 2, 1, 2),
    (8, 8, 3, 2, 0, 0),
    (6, 11, 5, 1, 2, 2),
    (3, 3, 5, 2, 2, 2),
    (7, 5, 3, 2, 1, 1),
];

/// Checks a k x k convolution + bias + ReLU6 kernel `ours` on every
/// geometry of [`CASES`] against the definition ([`direct`]) and `theirs`,
/// the same from candle ops: outputs, and input gradients of `sum(y * r)`.
/// Input [n, cin, h, w] with weights [k, k, cin, cout], or for `depthwise`
/// NHWC input with weights [k, k, c] (cin == cout == c). Case `i` draws
/// x, w and b from seeds `seed * i` + 0, 1, 2, and r from `seed_r`.
pub(super) fn check_against_direct(
    (n, cin, cout): (usize, usize, usize),
    depthwise: bool,
    (seed, seed_r): (u64, u64),
    ours: impl Fn(&Tensor, Geometry, &Tensor, &Tensor) -> Tensor,
    theirs: impl Fn(&Tensor, Geometry, &Tensor, &Tensor) -> Tensor,
) {
    for (i, &(h, w, k, s, pt, pl)) in CASES.iter().enumerate() {
        let g = geometry(h, w, k, s, pt, pl);
        let (xs, ws) = match depthwise {
            true => (vec![n, h, w, cin], vec![k, k, cin]),
            false => (vec![n, cin, h, w], vec![k, k, cin, cout]),
        };
        let at = seed * i as u64;
        let (x, wt, b) = (rand(&xs, at), rand(&ws, at + 1), rand(&[cout], at + 2));
        let (hx, hw, hb) = (host(&x), host(&wt), host(&b));
        let want = direct(&hx, (n, cin, h, w), &hw, &hb, &g, depthwise, depthwise);
        let xv = Var::from_tensor(&x).unwrap();
        let y = ours(xv.as_tensor(), g, &wt, &b);
        let yc = theirs(xv.as_tensor(), g, &wt, &b);
        assert_eq!(y.dims(), &[n, g.ho, g.wo, cout]);
        assert!(max_diff(&host(&y), &want) < 1e-5, "case {i}: kernel");
        assert!(max_diff(&host(&yc), &want) < 1e-5, "case {i}: candle");
        let r = rand(y.dims(), seed_r);
        let grad = |y: &Tensor| {
            let gs = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            host(gs.get(xv.as_tensor()).unwrap())
        };
        let (go, gc) = (grad(&y), grad(&yc));
        assert!(gc.iter().filter(|v| **v != 0.0).count() > gc.len() / 4);
        assert!(max_diff(&go, &gc) < 1e-5, "case {i}: gradients");
    }
}

/// Gradients of `sum(y * r)` with respect to `x` through `f`.
pub(super) fn input_grad(x: &Var, f: impl Fn(&Tensor) -> Tensor) -> (Vec<f32>, Vec<f32>) {
    let y = f(x.as_tensor());
    let r = rand(y.dims(), 77);
    let gs = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    (host(&y), host(gs.get(x.as_tensor()).unwrap()))
}
