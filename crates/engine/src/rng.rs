//! Our own random numbers: SplitMix64 to derive seeds, PCG32
//! (XSH-RR) for streams. Written here so that the demo's images, its training
//! run and random-weight models never change with a crate's RNG version.

/// SplitMix64's finalizer: a strong 64-bit mix.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seed for item `index` of the stream `tag` under `seed`: every image
/// gets its own generator, so images can be made in any order or in parallel.
pub fn derive(seed: u64, tag: &str, index: u64) -> u64 {
    // FNV-1a of the tag, then mixed with the seed and the index.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tag.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    mix64(mix64(seed ^ h).wrapping_add(index))
}

/// PCG32 (O'Neill's pcg32_random_r): 64-bit state, 32-bit output.
#[derive(Debug, Clone)]
pub struct Pcg32 {
    state: u64,
    inc: u64,
}

impl Pcg32 {
    const MULT: u64 = 6_364_136_223_846_793_005;

    pub fn new(seed: u64) -> Self {
        let mut r = Pcg32 {
            state: 0,
            inc: (mix64(seed ^ 0xda3e_39cb_94b9_5bdb) << 1) | 1,
        };
        r.next_u32();
        r.state = r.state.wrapping_add(mix64(seed));
        r.next_u32();
        r
    }

    pub fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old.wrapping_mul(Self::MULT).wrapping_add(self.inc);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        let rot = (old >> 59) as u32;
        xorshifted.rotate_right(rot)
    }

    /// Uniform in [0, 1) with 32 random bits.
    pub fn unit(&mut self) -> f32 {
        (self.next_u32() as f64 / 4_294_967_296.0) as f32
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in 0..n (n > 0), without modulo bias worth noticing
    /// for the small n used here (Lemire's multiply-shift).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u32() as u64 * n as u64) >> 32) as usize
    }

    pub fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }

    /// Approximately standard normal (sum of four uniforms, rescaled):
    /// enough for pixel noise and weight initialization, and exact to
    /// reproduce everywhere since it uses no transcendental functions.
    pub fn normal(&mut self) -> f32 {
        let s: f32 = (0..4).map(|_| self.unit()).sum();
        (s - 2.0) * (3.0f32).sqrt()
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// `n` draws uniform in [lo, hi) from the stream `seed` (fixed inputs for
/// tests and benchmarks).
pub fn uniforms(seed: u64, lo: f32, hi: f32, n: usize) -> Vec<f32> {
    let mut r = Pcg32::new(seed);
    (0..n).map(|_| r.range(lo, hi)).collect()
}

/// `n` draws of mean + std * [`Pcg32::normal`] from the stream `seed`.
pub fn normals(seed: u64, mean: f32, std: f32, n: usize) -> Vec<f32> {
    let mut r = Pcg32::new(seed);
    (0..n).map(|_| mean + std * r.normal()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcg32_matches_the_reference_stream() {
        // pcg32_srandom_r(42, 54) of the PCG reference (pcg32-demo.c) gives
        // 0xa15c02b7 0x7b47f409 0xba1d3330 0x83d2f293 0xbfa4784b 0xcbed606e.
        let mut r = Pcg32 {
            state: 0,
            inc: (54u64 << 1) | 1,
        };
        r.next_u32();
        r.state = r.state.wrapping_add(42);
        r.next_u32();
        let got: Vec<u32> = (0..6).map(|_| r.next_u32()).collect();
        assert_eq!(
            got,
            [0xa15c02b7, 0x7b47f409, 0xba1d3330, 0x83d2f293, 0xbfa4784b, 0xcbed606e]
        );
    }

    #[test]
    fn normal_has_unit_variance() {
        let mut r = Pcg32::new(7);
        let n = 20_000;
        let xs: Vec<f32> = (0..n).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f32>() / n as f32;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n as f32;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
    }
}
