//! Huffman tables, the entropy-coded bit reader and block decoding, as
//! libjpeg's jdhuff.c does them (corrupt data included).

/// Natural-order index of each zigzag position; positions past 63 (a
/// corrupt run) land on 63, as libjpeg's padded table makes them.
pub(super) const ZIGZAG: [u8; 80] = {
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

#[derive(Clone, Default)]
pub(super) struct Huffman {
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
    pub(super) fn new(counts: &[u8; 16], values: Vec<u8>) -> Option<Huffman> {
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
pub(super) struct Bits<'a> {
    data: &'a [u8],
    pub(super) pos: usize,
    /// Valid bits, left-aligned; the first `real` of them come from the
    /// data, the rest are made-up zeros.
    acc: u64,
    n: u32,
    real: u32,
    /// The marker code that ended the data, once reached.
    pub(super) marker: Option<u8>,
    /// Zero bits had to be made up (libjpeg then leaves the rest of the
    /// segment's blocks empty).
    pub(super) insufficient: bool,
}

impl<'a> Bits<'a> {
    /// A reader of the entropy-coded data starting at `data[pos]`.
    pub(super) fn new(data: &'a [u8], pos: usize) -> Self {
        Bits {
            data,
            pos,
            acc: 0,
            n: 0,
            real: 0,
            marker: None,
            insufficient: false,
        }
    }

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
    pub(super) fn restart(&mut self, expected: u8) -> Option<()> {
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

pub(super) fn decode_block(
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
