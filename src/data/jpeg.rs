//! Over 600 lines on purpose: one decoder that reads against libjpeg's
//! jdhuff.c, jidctint.c and jdsample.c step by step, for bit-exactness.
//!
//! A sequential (baseline) JPEG decoder whose output is bit-identical to
//! libjpeg-turbo's default decompression, which PIL uses and so the seed:
//! the accurate integer IDCT ("islow"), "fancy" triangle-filter chroma
//! upsampling with its edge rules, and the fixed-point YCbCr -> RGB tables.
//! zune-jpeg (the `image` crate's decoder) differs from it by a level or two
//! on a fifth of the values of typical 4:2:0 photos.
//!
//! It covers what datasets hold: 8-bit Huffman-coded sequential JPEGs, grey
//! or three components with 4:4:4, 4:2:2, 4:4:0 or 4:2:0 sampling. Anything
//! else (progressive, arithmetic coding, CMYK, unusual sampling, data it
//! cannot make sense of) returns `None` and the caller falls back to the
//! `image` crate.
//!
//! The arithmetic follows the Independent JPEG Group's algorithms as
//! libjpeg-turbo implements them (jidctint.c, jdsample.c, jdcolor.c); this
//! software is based in part on the work of the Independent JPEG Group.

use image::RgbImage;

/// Natural-order index of each zigzag position; positions past 63 (a
/// corrupt run) land on 63, as libjpeg's padded table makes them.
const ZIGZAG: [u8; 80] = {
    let base: [u8; 64] = [
        0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27,
        20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
        58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
    ];
    let mut t = [63u8; 80];
    let mut i = 0;
    while i < 64 {
        t[i] = base[i];
        i += 1;
    }
    t
};

/// Decodes `bytes` (a complete JPEG) to RGB exactly as libjpeg-turbo with
/// default settings, then PIL's L -> RGB for grey images; `None` when the
/// file uses something this decoder does not cover.
pub(crate) fn decode(bytes: &[u8]) -> Option<RgbImage> {
    Decoder::default().run(bytes)
}

#[derive(Clone, Default)]
struct Huffman {
    /// Symbol and code length for every 9-bit prefix (length 0: longer code).
    fast: Vec<(u8, u8)>,
    /// Per length 1..=16: largest code (-1 if none), and offset of its
    /// symbols: symbol = values[code + delta[len]].
    maxcode: [i32; 18],
    delta: [i32; 17],
    values: Vec<u8>,
}

const FAST_BITS: u32 = 9;

impl Huffman {
    fn new(counts: &[u8; 16], values: Vec<u8>) -> Option<Huffman> {
        let mut h = Huffman {
            fast: vec![(0, 0); 1 << FAST_BITS],
            maxcode: [-1; 18],
            delta: [0; 17],
            values,
        };
        let (mut code, mut k) = (0i32, 0usize);
        for len in 1..=16usize {
            let n = counts[len - 1] as usize;
            if n > 0 {
                h.delta[len] = k as i32 - code;
                for _ in 0..n {
                    // Codes must fit their length (a malformed table otherwise).
                    if code >= 1 << len {
                        return None;
                    }
                    let sym = *h.values.get(k)?;
                    if len as u32 <= FAST_BITS {
                        let shift = FAST_BITS - len as u32;
                        let start = (code as usize) << shift;
                        for e in &mut h.fast[start..start + (1 << shift)] {
                            *e = (sym, len as u8);
                        }
                    }
                    code += 1;
                    k += 1;
                }
                h.maxcode[len] = code - 1;
            }
            code <<= 1;
        }
        h.maxcode[17] = i32::MAX; // sentinel
        Some(h)
    }
}

/// The entropy-coded data reader: unstuffs FF00, stops at markers and then
/// supplies zero bits, as libjpeg does.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    /// Valid bits, left-aligned; the first `real` of them come from the
    /// data, the rest are made-up zeros.
    acc: u64,
    n: u32,
    real: u32,
    /// The marker code that ended the data, once reached.
    marker: Option<u8>,
    /// Zero bits had to be made up (libjpeg then leaves the rest of the
    /// segment's blocks empty).
    insufficient: bool,
}

impl<'a> Bits<'a> {
    fn fill(&mut self) {
        while self.n <= 56 {
            let byte = if self.marker.is_some() {
                // Supplied only when needed; see `need`.
                return;
            } else {
                let Some(&c) = self.data.get(self.pos) else {
                    self.marker = Some(0xD9);
                    return;
                };
                self.pos += 1;
                if c != 0xFF {
                    c
                } else {
                    // FF FF ... 00 is one data byte FF; FF xx a marker.
                    let mut p = self.pos;
                    while self.data.get(p) == Some(&0xFF) {
                        p += 1;
                    }
                    match self.data.get(p) {
                        Some(0) => {
                            self.pos = p + 1;
                            0xFF
                        }
                        Some(&m) => {
                            self.marker = Some(m);
                            self.pos = p + 1;
                            return;
                        }
                        None => {
                            self.marker = Some(0xD9);
                            self.pos = p;
                            return;
                        }
                    }
                }
            };
            self.acc |= (byte as u64) << (56 - self.n);
            self.n += 8;
            self.real += 8;
        }
    }

    /// Makes at least `k` (<= 32) bits available, padding with zeros past
    /// the end of the data.
    #[inline]
    fn need(&mut self, k: u32) {
        if self.n < k {
            self.fill();
            if self.n < k {
                self.n = 57; // the bits below are already zero
            }
        }
    }

    #[inline]
    fn peek(&self, k: u32) -> u32 {
        (self.acc >> (64 - k)) as u32
    }

    /// Drops `k` bits; using made-up ones marks the data insufficient.
    #[inline]
    fn consume(&mut self, k: u32) {
        self.acc <<= k;
        self.n -= k;
        if k > self.real {
            self.insufficient = true;
        }
        self.real = self.real.saturating_sub(k);
    }

    fn bits(&mut self, k: u32) -> u32 {
        if k == 0 {
            return 0;
        }
        self.need(k);
        let v = self.peek(k);
        self.consume(k);
        v
    }

    /// A value of `s` bits, sign-extended the JPEG way.
    fn extend(&mut self, s: u32) -> i32 {
        let v = self.bits(s) as i32;
        if s > 0 && v < 1 << (s - 1) {
            v - (1 << s) + 1
        } else {
            v
        }
    }

    fn symbol(&mut self, h: &Huffman) -> Option<u8> {
        self.need(16);
        let (sym, len) = h.fast[self.peek(FAST_BITS) as usize];
        if len > 0 {
            self.consume(len as u32);
            return Some(sym);
        }
        let mut len = FAST_BITS as usize + 1;
        let mut code = self.peek(len as u32) as i32;
        while code > h.maxcode[len] {
            len += 1;
            if len > 16 {
                // No such code (corrupt data): libjpeg drops 17 bits and
                // takes symbol 0.
                self.need(17);
                self.consume(17);
                return Some(0);
            }
            code = self.peek(len as u32) as i32;
        }
        self.consume(len as u32);
        h.values.get((code + h.delta[len]) as usize).copied()
    }

    /// At a restart boundary: drops the remaining bits and reads the
    /// expected RSTn marker.
    fn restart(&mut self, expected: u8) -> Option<()> {
        self.acc = 0;
        self.n = 0;
        self.real = 0;
        self.insufficient = false;
        let m = match self.marker.take() {
            Some(m) => m,
            None => {
                // Skip to the next marker (libjpeg warns about stray bytes).
                while *self.data.get(self.pos)? != 0xFF {
                    self.pos += 1;
                }
                while *self.data.get(self.pos)? == 0xFF {
                    self.pos += 1;
                }
                self.pos += 1;
                self.data[self.pos - 1]
            }
        };
        // libjpeg resynchronises on a wrong marker; too rare to follow.
        (m == 0xD0 + expected).then_some(())
    }
}

#[derive(Clone, Debug)]
struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    /// Samples (after IDCT), padded to whole MCUs.
    plane: Vec<u8>,
    stride: usize,
    /// Real (cropped) size in samples.
    width: usize,
    height: usize,
    scanned: bool,
}

#[derive(Default)]
struct Decoder {
    quant: [Option<[u16; 64]>; 4],
    dc: [Option<Huffman>; 4],
    ac: [Option<Huffman>; 4],
    restart_interval: usize,
    jfif: bool,
    adobe: Option<u8>,
    width: usize,
    height: usize,
    comps: Vec<Component>,
    max_h: usize,
    max_v: usize,
    mcus_x: usize,
    mcus_y: usize,
}

fn be16(b: &[u8], i: usize) -> Option<usize> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]) as usize)
}

impl Decoder {
    fn run(mut self, b: &[u8]) -> Option<RgbImage> {
        if !b.starts_with(&[0xFF, 0xD8]) {
            return None;
        }
        let mut i = 2;
        loop {
            // Find the next marker, skipping stray bytes and fill bytes.
            while *b.get(i)? != 0xFF {
                i += 1;
            }
            while *b.get(i)? == 0xFF {
                i += 1;
            }
            let marker = *b.get(i)?;
            i += 1;
            match marker {
                0xD9 => break,
                // Standalone markers, and stray stuffed bytes after a scan.
                0x00 | 0x01 | 0xD0..=0xD7 => continue,
                _ => {}
            }
            let len = be16(b, i)?;
            let seg = b.get(i + 2..i + len)?;
            i += len;
            match marker {
                0xC0 | 0xC1 => self.frame(seg)?,
                // Progressive, lossless, arithmetic, hierarchical: not ours.
                0xC2..=0xCF if marker != 0xC4 && marker != 0xC8 && marker != 0xCC => return None,
                0xC4 => self.huffman(seg)?,
                0xCC => return None, // arithmetic conditioning
                0xDB => self.quantization(seg)?,
                0xDD => self.restart_interval = be16(seg, 0)?,
                0xE0 => self.jfif |= seg.len() >= 14 && seg.starts_with(b"JFIF\0"),
                0xEE if seg.len() >= 12 && seg.starts_with(b"Adobe") => self.adobe = Some(seg[11]),
                0xDA => i = self.scan(seg, b, i)?,
                0xDC => return None, // DNL
                _ => {}              // APPn, COM, ...
            }
        }
        self.output()
    }

    fn frame(&mut self, s: &[u8]) -> Option<()> {
        if !self.comps.is_empty() || *s.first()? != 8 {
            return None; // a second frame, or not 8-bit
        }
        self.height = be16(s, 1)?;
        self.width = be16(s, 3)?;
        let n = *s.get(5)? as usize;
        // Huge images go to the `image` crate, which enforces its memory
        // limit (512 MiB) with a proper error.
        if self.width == 0
            || self.height == 0
            || !(n == 1 || n == 3)
            || self.width * self.height > 1 << 26
        {
            return None;
        }
        for c in 0..n {
            let p = s.get(6 + 3 * c..9 + 3 * c)?;
            let (h, v) = ((p[1] >> 4) as usize, (p[1] & 15) as usize);
            if !(1..=4).contains(&h) || !(1..=4).contains(&v) || p[2] > 3 {
                return None;
            }
            self.comps.push(Component {
                id: p[0],
                h,
                v,
                tq: p[2] as usize,
                plane: Vec::new(),
                stride: 0,
                width: 0,
                height: 0,
                scanned: false,
            });
        }
        if n == 1 {
            // A lone component's sampling factors do not matter.
            self.comps[0].h = 1;
            self.comps[0].v = 1;
        }
        self.max_h = self.comps.iter().map(|c| c.h).max()?;
        self.max_v = self.comps.iter().map(|c| c.v).max()?;
        // Supported: luma sampled 1 or 2 by 1 or 2, both chroma 1x1
        // (4:4:4, 4:2:2, 4:4:0, 4:2:0).
        if n == 3
            && (self.max_h > 2
                || self.max_v > 2
                || (self.comps[0].h, self.comps[0].v) != (self.max_h, self.max_v)
                || self.comps[1..].iter().any(|c| (c.h, c.v) != (1, 1)))
        {
            return None;
        }
        self.mcus_x = self.width.div_ceil(8 * self.max_h);
        self.mcus_y = self.height.div_ceil(8 * self.max_v);
        let (w, h, mh, mv) = (self.width, self.height, self.max_h, self.max_v);
        let (mx, my) = (self.mcus_x, self.mcus_y);
        for c in &mut self.comps {
            c.stride = mx * c.h * 8;
            c.plane = vec![0u8; c.stride * my * c.v * 8];
            c.width = (w * c.h).div_ceil(mh);
            c.height = (h * c.v).div_ceil(mv);
        }
        Some(())
    }

    fn huffman(&mut self, mut s: &[u8]) -> Option<()> {
        while !s.is_empty() {
            let (class, id) = (s[0] >> 4, (s[0] & 15) as usize);
            let counts: [u8; 16] = s.get(1..17)?.try_into().ok()?;
            let total: usize = counts.iter().map(|&c| c as usize).sum();
            let values = s.get(17..17 + total)?.to_vec();
            if id > 3 || total > 256 {
                return None;
            }
            let table = Some(Huffman::new(&counts, values)?);
            match class {
                0 => self.dc[id] = table,
                1 => self.ac[id] = table,
                _ => return None,
            }
            s = &s[17 + total..];
        }
        Some(())
    }

    fn quantization(&mut self, mut s: &[u8]) -> Option<()> {
        while !s.is_empty() {
            let (precision, id) = (s[0] >> 4, (s[0] & 15) as usize);
            if id > 3 {
                return None;
            }
            let mut table = [0u16; 64];
            let size = if precision == 0 { 64 } else { 128 };
            let values = s.get(1..1 + size)?;
            for k in 0..64 {
                table[ZIGZAG[k] as usize] = if precision == 0 {
                    values[k] as u16
                } else {
                    u16::from_be_bytes([values[2 * k], values[2 * k + 1]])
                };
            }
            self.quant[id] = Some(table);
            s = &s[1 + size..];
        }
        Some(())
    }

    /// Decodes one scan; returns the position of the marker that ends it.
    fn scan(&mut self, s: &[u8], data: &[u8], start: usize) -> Option<usize> {
        let n = *s.first()? as usize;
        if n == 0 || n > self.comps.len() {
            return None;
        }
        // Per scan component: index, DC and AC tables, quantization table.
        let mut sc = Vec::with_capacity(n);
        for k in 0..n {
            let p = s.get(1 + 2 * k..3 + 2 * k)?;
            let ci = self.comps.iter().position(|c| c.id == p[0])?;
            let (td, ta) = ((p[1] >> 4) as usize, (p[1] & 15) as usize);
            let dc = self.dc.get(td)?.clone()?;
            let ac = self.ac.get(ta)?.clone()?;
            let q = self.quant[self.comps[ci].tq]?;
            sc.push((ci, dc, ac, q));
        }
        let tail = s.get(1 + 2 * n..4 + 2 * n)?;
        if tail != [0, 63, 0] {
            return None; // spectral selection / successive approximation
        }
        let mut bits = Bits {
            data,
            pos: start,
            acc: 0,
            n: 0,
            real: 0,
            marker: None,
            insufficient: false,
        };
        // MCU layout: interleaved scans take h x v blocks of each component;
        // a single-component scan takes one block at a time over the
        // component's own block grid.
        let (mcus_x, mcus_y) = if n == 1 {
            let c = &self.comps[sc[0].0];
            (c.width.div_ceil(8), c.height.div_ceil(8))
        } else {
            (self.mcus_x, self.mcus_y)
        };
        let mut pred = vec![0i32; n];
        let mut block = [0i16; 64];
        let (mut until_restart, mut next_rst) = (self.restart_interval, 0u8);
        for my in 0..mcus_y {
            for mx in 0..mcus_x {
                if self.restart_interval > 0 {
                    if until_restart == 0 {
                        bits.restart(next_rst)?;
                        next_rst = (next_rst + 1) & 7;
                        pred.iter_mut().for_each(|p| *p = 0);
                        until_restart = self.restart_interval;
                    }
                    until_restart -= 1;
                }
                // Once the data has run out, libjpeg leaves whole MCUs empty.
                let skip = bits.insufficient;
                for (k, (ci, dc, ac, q)) in sc.iter().enumerate() {
                    let c = &mut self.comps[*ci];
                    let (bh, bv) = if n == 1 { (1, 1) } else { (c.h, c.v) };
                    for by in 0..bv {
                        for bx in 0..bh {
                            block.fill(0);
                            if !skip {
                                decode_block(&mut bits, dc, ac, &mut pred[k], &mut block)?;
                            }
                            let (x, y) = ((mx * bh + bx) * 8, (my * bv + by) * 8);
                            let at = y * c.stride + x;
                            idct_islow(&block, q, &mut c.plane[at..], c.stride);
                        }
                    }
                }
            }
        }
        for (ci, ..) in &sc {
            self.comps[*ci].scanned = true;
        }
        // Continue after the marker that ended the data (which the outer
        // loop re-reads), or at the current position.
        if bits.marker.is_some() {
            // Back up to the marker's 0xFF so the outer loop finds it.
            Some(bits.pos - 2)
        } else {
            Some(bits.pos)
        }
    }

    fn output(self) -> Option<RgbImage> {
        if self.comps.is_empty() || self.comps.iter().any(|c| !c.scanned) {
            return None;
        }
        let (w, h) = (self.width, self.height);
        let mut out = vec![0u8; w * h * 3];
        if self.comps.len() == 1 {
            let c = &self.comps[0];
            for (y, row) in out.chunks_exact_mut(w * 3).enumerate() {
                let src = &c.plane[y * c.stride..y * c.stride + w];
                for (px, &v) in row.chunks_exact_mut(3).zip(src) {
                    px.fill(v);
                }
            }
            return RgbImage::from_raw(w as u32, h as u32, out);
        }
        // libjpeg's colour space guess for three components.
        let ids = [self.comps[0].id, self.comps[1].id, self.comps[2].id];
        let rgb = !self.jfif
            && match self.adobe {
                Some(t) => t == 0,
                None => ids == [b'R', b'G', b'B'],
            };
        let (mh, mv) = (self.max_h, self.max_v);
        let up_w = self.comps[1].width * mh;
        let mut cb = vec![0u8; up_w];
        let mut cr = vec![0u8; up_w];
        let tables = YccTables::new();
        for (y, row) in out.chunks_exact_mut(w * 3).enumerate() {
            let luma = &self.comps[0].plane[y * self.comps[0].stride..];
            upsample_row(&self.comps[1], mh, mv, y, &mut cb);
            upsample_row(&self.comps[2], mh, mv, y, &mut cr);
            for (x, px) in row.chunks_exact_mut(3).enumerate() {
                let (l, b, r) = (luma[x], cb[x], cr[x]);
                if rgb {
                    px.copy_from_slice(&[l, b, r]);
                } else {
                    px.copy_from_slice(&tables.rgb(l, b, r));
                }
            }
        }
        RgbImage::from_raw(w as u32, h as u32, out)
    }
}

fn decode_block(
    bits: &mut Bits,
    dc: &Huffman,
    ac: &Huffman,
    pred: &mut i32,
    block: &mut [i16; 64],
) -> Option<()> {
    let s = bits.symbol(dc)? as u32;
    if s > 16 {
        return None;
    }
    *pred = pred.wrapping_add(bits.extend(s));
    block[0] = *pred as i16;
    let mut k = 1usize;
    while k < 64 {
        let rs = bits.symbol(ac)?;
        let (r, s) = ((rs >> 4) as usize, (rs & 15) as u32);
        if s != 0 {
            k += r;
            block[ZIGZAG[k] as usize] = bits.extend(s) as i16;
        } else if r != 15 {
            break;
        } else {
            k += 15;
        }
        k += 1;
    }
    Some(())
}

/// libjpeg's accurate integer inverse DCT (jidctint.c, 13-bit constants),
/// writing 8x8 samples at `out` with row stride `stride`. Output clamps to
/// 0..=255 as libjpeg-turbo's SIMD version does.
fn idct_islow(coef: &[i16; 64], q: &[u16; 64], out: &mut [u8], stride: usize) {
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

/// Output row `y` of chroma component `c` upsampled by (mh, mv) into
/// `out` (at least `c.width * mh` long), as libjpeg-turbo's "fancy"
/// upsamplers do: triangle filters with their roundings, edge samples
/// replicated, and plain replication for chroma at most 2 samples wide.
fn upsample_row(c: &Component, mh: usize, mv: usize, y: usize, out: &mut [u8]) {
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
struct YccTables {
    cr_r: [i32; 256],
    cb_b: [i32; 256],
    cr_g: [i32; 256],
    cb_g: [i32; 256],
}

impl YccTables {
    fn new() -> Self {
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
    fn rgb(&self, y: u8, cb: u8, cr: u8) -> [u8; 3] {
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
