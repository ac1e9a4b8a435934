//! libjpeg's accurate integer inverse DCT (jidctint.c).

/// libjpeg's accurate integer inverse DCT (jidctint.c, 13-bit constants),
/// writing 8x8 samples at `out` with row stride `stride`. Output clamps to
/// 0..=255 as libjpeg-turbo's SIMD version does.
pub(super) fn idct_islow(coef: &[i16; 64], q: &[u16; 64], out: &mut [u8], stride: usize) {
    const CONST_BITS: u32 = 13;
    const PASS1_BITS: u32 = 2;
    const F0_298: i64 = 2446;
    const F0_390: i64 = 3196;
    const F0_541: i64 = 4433;
    const F0_765: i64 = 6270;
    const F0_899: i64 = 7373;
    const F1_175: i64 = 9633;
    const F1_501: i64 = 12299;
    const F1_847: i64 = 15137;
    const F1_961: i64 = 16069;
    const F2_053: i64 = 16819;
    const F2_562: i64 = 20995;
    const F3_072: i64 = 25172;
    #[inline(always)]
    fn descale(x: i64, n: u32) -> i64 {
        (x + (1 << (n - 1))) >> n
    }
    /// The even and odd parts shared by both passes; returns the eight
    /// outputs before descaling, in order 0..8.
    #[inline(always)]
    fn butterfly(v: [i64; 8], dc_shift: u32) -> [i64; 8] {
        let z1 = (v[2] + v[6]) * F0_541;
        let tmp2 = z1 - v[6] * F1_847;
        let tmp3 = z1 + v[2] * F0_765;
        let tmp0 = (v[0] + v[4]) << dc_shift;
        let tmp1 = (v[0] - v[4]) << dc_shift;
        let (t10, t13, t11, t12) = (tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2);
        let (mut o0, mut o1, mut o2, mut o3) = (v[7], v[5], v[3], v[1]);
        let z1 = o0 + o3;
        let z2 = o1 + o2;
        let z3 = o0 + o2;
        let z4 = o1 + o3;
        let z5 = (z3 + z4) * F1_175;
        o0 *= F0_298;
        o1 *= F2_053;
        o2 *= F3_072;
        o3 *= F1_501;
        let z1 = -z1 * F0_899;
        let z2 = -z2 * F2_562;
        let z3 = -z3 * F1_961 + z5;
        let z4 = -z4 * F0_390 + z5;
        o0 += z1 + z3;
        o1 += z2 + z4;
        o2 += z2 + z3;
        o3 += z1 + z4;
        [
            t10 + o3,
            t11 + o2,
            t12 + o1,
            t13 + o0,
            t13 - o0,
            t12 - o1,
            t11 - o2,
            t10 - o3,
        ]
    }
    let mut ws = [0i32; 64];
    for col in 0..8 {
        let v: [i64; 8] = std::array::from_fn(|r| coef[r * 8 + col] as i64 * q[r * 8 + col] as i64);
        if v[1..].iter().all(|&x| x == 0) {
            let dc = (v[0] << PASS1_BITS) as i32;
            for r in 0..8 {
                ws[r * 8 + col] = dc;
            }
            continue;
        }
        let o = butterfly(v, CONST_BITS);
        for r in 0..8 {
            ws[r * 8 + col] = descale(o[r], CONST_BITS - PASS1_BITS) as i32;
        }
    }
    for r in 0..8 {
        let v: [i64; 8] = std::array::from_fn(|c| ws[r * 8 + c] as i64);
        let row = &mut out[r * stride..r * stride + 8];
        let o = butterfly(v, CONST_BITS);
        for c in 0..8 {
            let x = descale(o[c], CONST_BITS + PASS1_BITS + 3);
            row[c] = (x + 128).clamp(0, 255) as u8;
        }
    }
}
