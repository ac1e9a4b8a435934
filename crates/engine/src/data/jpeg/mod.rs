//! A sequential (baseline) JPEG decoder, bit-exact with libjpeg-turbo: the
//! marker parser and scan loop; entropy decoding, the IDCT and colour live in
//! the submodules, each following its libjpeg source file step by step.
//!
//! Its output is bit-identical to
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

mod chroma;
mod huffman;
mod idct;

use image::RgbImage;

use chroma::{upsample_row, YccTables};
use huffman::{decode_block, Bits, Huffman, ZIGZAG};
use idct::idct_islow;

/// Decodes `bytes` (a complete JPEG) to RGB exactly as libjpeg-turbo with
/// default settings, then PIL's L -> RGB for grey images; `None` when the
/// file uses something this decoder does not cover.
pub(crate) fn decode(bytes: &[u8]) -> Option<RgbImage> {
    Decoder::default().run(bytes)
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
        let mut bits = Bits::new(data, start);
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
