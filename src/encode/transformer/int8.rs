//! int8 dense layers for the transformer encoders on the CPU (`--text-quantization int8`).
//!
//! Weights are quantized once at load, per output channel (symmetric, scale = max|w| / 127);
//! activations per token row at run time (symmetric, scale = max|x| / 127, stored as u8 with zero
//! point 128). Every kernel computes the exact integer sums, so the AVX-512 VNNI (`vpdpbusd`),
//! AVX2 (i16 `vpmaddwd`: AVX2's u8·i8 `vpmaddubsw` would saturate at 8 bits) and portable kernels
//! give the same numbers on every CPU and a feature set means the same vectors everywhere.
//!
//! Weights are packed `[n/16][k/4][16][4]`: one 64-byte load holds 4 k-values of 16 output
//! columns, what one `vpdpbusd` multiplies by 4 broadcast activation bytes.
//!
//! Why our own kernel: candle 0.11.1's quantized matmul (Q8_0) ran at 0.24–0.39× its f32 GEMM on
//! MiniLM's shapes (448 token rows; 2-core AMD EPYC with AVX-512 VNNI). This one, in
//! `xmodal embed throughput` (release, same CPU, two alternating runs): MiniLM batch 1 87–120 →
//! 250–315 captions/s, batch 32 304–411 → 312–461 before pairing tiles, 338–411 → 422–461 after.
//! Then quantizing and scaling in vector code, one task per block of rows instead of per tile
//! (quantizing and scaling had been one thread's scalar loops: 45% of the time) and buffers kept
//! per thread (`cargo bench --bench encoders -- --text-only --rounds 3 --reps 5`, same CPU):
//! batch 1 / 8 / 32 255 / 373 / 397 → 356 / 797 / 672 captions/s; PyTorch's dynamic int8 in the
//! same run 165 / 474 / 549.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::encode::cpu::contiguous_rows;

const TILE: usize = 16;
/// Activations are quantized to ±ACT_MAX around the zero point ACT_ZERO (u8).
const ACT_MAX: f32 = 127.0;
const ACT_ZERO: i32 = 128;

/// A `Linear` (`y = x·Wᵀ + b`) with int8 weights.
#[derive(Clone)]
pub struct Int8Linear {
    n: usize,
    k: usize,
    packed: Arc<[i8]>,
    /// Per output column: the weight scale.
    scales: Arc<[f32]>,
    /// Per output column: ACT_ZERO · Σₖ w_q, taken off the u8·i8 sum.
    offsets: Arc<[i32]>,
    bias: Arc<[f32]>,
}

impl Int8Linear {
    /// From an f32 `[n, k]` weight and optional `[n]` bias; `None` when the shape does not tile
    /// (n a multiple of 16, k of 4), and the layer stays f32.
    pub fn quantize(weight: &Tensor, bias: Option<&Tensor>) -> candle_core::Result<Option<Self>> {
        let (n, k) = weight.dims2()?;
        if n % TILE != 0 || k % 4 != 0 || k == 0 {
            return Ok(None);
        }
        let w: Vec<Vec<f32>> = weight.to_vec2()?;
        let mut scales = Vec::with_capacity(n);
        let mut offsets = Vec::with_capacity(n);
        let mut q = vec![0i8; n * k];
        for (row, out) in w.iter().zip(q.chunks_mut(k)) {
            let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            let mut sum = 0i32;
            for (v, o) in row.iter().zip(out.iter_mut()) {
                *o = (v / scale).round().clamp(-127.0, 127.0) as i8;
                sum += *o as i32;
            }
            scales.push(scale);
            offsets.push(ACT_ZERO * sum);
        }
        let mut packed = vec![0i8; n * k];
        for col in 0..n {
            for kk in 0..k {
                let (tile, c, kb, j) = (col / TILE, col % TILE, kk / 4, kk % 4);
                packed[((tile * (k / 4) + kb) * TILE + c) * 4 + j] = q[col * k + kk];
            }
        }
        let bias = match bias {
            Some(b) => b.to_vec1()?,
            None => vec![0.0; n],
        };
        Ok(Some(Self {
            n,
            k,
            packed: packed.into(),
            scales: scales.into(),
            offsets: offsets.into(),
            bias: bias.into(),
        }))
    }

    /// `x`: `[m, k]` f32 rows → `[m, n]`. Rows are split into one block per task (2 per
    /// thread): each block quantizes its own rows, runs every tile over them and writes its own
    /// rows of `y`, so no step is single-threaded and nothing is gathered afterwards.
    fn forward_rows(&self, x: &[f32], kernel: Kernel) -> Vec<f32> {
        let (n, k) = (self.n, self.k);
        let m = x.len() / k;
        let mut y = vec![0f32; m * n];
        let tasks = 2 * rayon::current_num_threads();
        let rows = m.div_ceil(tasks).next_multiple_of(ROW_BLOCK).max(ROW_BLOCK);
        y.par_chunks_mut(rows * n)
            .zip(x.par_chunks(rows * k))
            .for_each(|(y, x)| self.forward_block(x, y, kernel));
        y
    }

    fn forward_block(&self, x: &[f32], y: &mut [f32], kernel: Kernel) {
        let (n, k) = (self.n, self.k);
        let m = x.len() / k;
        SCRATCH.with_borrow_mut(|scratch| {
            let (acts, acc) = scratch.take(m * k, m * n);
            self.forward_block_in(x, y, kernel, acts, acc)
        })
    }

    /// `acts` (`m·k`) and `acc` (`m·n`) are scratch: every element is written before it is read.
    fn forward_block_in(
        &self,
        x: &[f32],
        y: &mut [f32],
        kernel: Kernel,
        acts: &mut [u8],
        acc: &mut [i32],
    ) {
        let (n, k) = (self.n, self.k);
        let m = x.len() / k;
        let mut act_scales = vec![0f32; m];
        kernel.quantize(x, k, acts, &mut act_scales);
        // tile-major sums: tile t's rows are acc[t·m·16..(t + 1)·m·16]
        let tile_len = m * TILE;
        // VNNI takes two tiles at once where they pair up: each broadcast activation then feeds
        // two multiply-adds (see the module header for what that measured)
        let pairs = kernel == Kernel::Avx512Vnni && n % (2 * TILE) == 0;
        #[cfg(target_arch = "x86_64")]
        if pairs {
            for (t, pair) in acc.chunks_mut(2 * tile_len).enumerate() {
                let w = &self.packed[2 * t * k * TILE..2 * (t + 1) * k * TILE];
                let (a0, a1) = pair.split_at_mut(tile_len);
                // SAFETY: the VNNI kernel is chosen only where the CPU has it
                unsafe { x86::tiles2_vnni(acts, w, m, k, a0, a1) };
            }
        }
        if !pairs {
            for (t, tile) in acc.chunks_mut(tile_len).enumerate() {
                let w = &self.packed[t * k * TILE..(t + 1) * k * TILE];
                kernel.run(acts, w, m, k, tile);
            }
        }
        kernel.dequantize(self, acc, &act_scales, y);
    }
}

/// Per-thread buffers for the quantized activations and the integer sums, kept between calls:
/// allocating them per layer cost a page fault per 4 KiB (mimalloc returns freed memory to the
/// OS after 10 ms, and a forward pass is longer). They grow to the largest block seen (batch 32
/// of MiniLM on 2 threads: 0.9 MiB per thread).
#[derive(Default)]
struct Scratch {
    acts: Vec<u8>,
    acc: Vec<i32>,
}

impl Scratch {
    fn take(&mut self, acts: usize, acc: usize) -> (&mut [u8], &mut [i32]) {
        if self.acts.len() < acts {
            self.acts.resize(acts, 0);
        }
        if self.acc.len() < acc {
            self.acc.resize(acc, 0);
        }
        (&mut self.acts[..acts], &mut self.acc[..acc])
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Rows per block of the kernels (their register blocking).
const ROW_BLOCK: usize = 8;

/// Each row of `x` (`k` wide) to u8 around ACT_ZERO, with its scale. Rounds half to even, what
/// `vcvtps2dq` does, so the compiler's vector code and the scalar fallback agree to the bit.
#[inline(always)]
fn quantize_rows(x: &[f32], k: usize, acts: &mut [u8], scales: &mut [f32]) {
    for ((row, out), s) in x.chunks(k).zip(acts.chunks_mut(k)).zip(scales.iter_mut()) {
        // not f32::max: its NaN rule keeps the loop from vectorising (inputs are finite)
        let max = row
            .iter()
            .fold(0f32, |a, v| if v.abs() > a { v.abs() } else { a });
        *s = if max > 0.0 { max / ACT_MAX } else { 1.0 };
        let inv = 1.0 / *s;
        for (v, o) in row.iter().zip(out.iter_mut()) {
            *o = ((v * inv).round_ties_even().clamp(-ACT_MAX, ACT_MAX) as i32 + ACT_ZERO) as u8;
        }
    }
}

/// Tile-major integer sums (see `forward_block`) to f32 rows of `y`, with scales and bias.
#[inline(always)]
fn dequantize_rows(layer: &Int8Linear, acc: &[i32], act_scales: &[f32], y: &mut [f32]) {
    let (n, m) = (layer.n, act_scales.len());
    for (r, (out, &s)) in y.chunks_mut(n).zip(act_scales).enumerate() {
        for (t, out) in out.chunks_mut(TILE).enumerate() {
            let sums = &acc[(t * m + r) * TILE..(t * m + r + 1) * TILE];
            let cols = t * TILE..(t + 1) * TILE;
            let (offsets, scales, bias) = (
                &layer.offsets[cols.clone()],
                &layer.scales[cols.clone()],
                &layer.bias[cols],
            );
            for c in 0..TILE {
                out[c] = (sums[c] - offsets[c]) as f32 * s * scales[c] + bias[c];
            }
        }
    }
}

impl CustomOp1 for Int8Linear {
    fn name(&self) -> &'static str {
        "int8-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, m) = contiguous_rows(storage, layout, self.k, "int8-linear")?;
        Ok((
            CpuStorage::F32(self.forward_rows(x, Kernel::best())),
            Shape::from((m, self.n)),
        ))
    }
}

/// Which integer kernel runs: all three give the same sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Portable,
    Avx2,
    Avx512Vnni,
}

impl Kernel {
    pub fn best() -> Self {
        if crate::simd::avx512_vnni() {
            Self::Avx512Vnni
        } else if crate::simd::avx2_fma() {
            Self::Avx2
        } else {
            Self::Portable
        }
    }

    fn quantize(self, x: &[f32], k: usize, acts: &mut [u8], scales: &mut [f32]) {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the SIMD kernels are chosen only where the CPU has AVX2
            Self::Avx2 | Self::Avx512Vnni => unsafe { x86::quantize_rows_avx2(x, k, acts, scales) },
            _ => quantize_rows(x, k, acts, scales),
        }
    }

    fn dequantize(self, layer: &Int8Linear, acc: &[i32], act_scales: &[f32], y: &mut [f32]) {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above
            Self::Avx2 | Self::Avx512Vnni => unsafe {
                x86::dequantize_rows_avx2(layer, acc, act_scales, y)
            },
            _ => dequantize_rows(layer, acc, act_scales, y),
        }
    }

    /// `acc[r·16 + c] = Σₖ acts[r·k + kk] · w(c, kk)` for one packed 16-column tile `w`.
    fn run(self, acts: &[u8], w: &[i8], m: usize, k: usize, acc: &mut [i32]) {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: chosen by `best()` only where the CPU has these extensions
            Self::Avx512Vnni => unsafe { x86::tile_vnni(acts, w, m, k, acc) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above
            Self::Avx2 => unsafe { x86::tile_avx2(acts, w, m, k, acc) },
            _ => tile_portable(acts, w, m, k, acc),
        }
    }
}

fn tile_portable(acts: &[u8], w: &[i8], m: usize, k: usize, acc: &mut [i32]) {
    for r in 0..m {
        let a = &acts[r * k..(r + 1) * k];
        let out = &mut acc[r * TILE..(r + 1) * TILE];
        out.fill(0);
        for kb in 0..k / 4 {
            let wb = &w[kb * TILE * 4..(kb + 1) * TILE * 4];
            for (c, o) in out.iter_mut().enumerate() {
                for j in 0..4 {
                    *o += a[kb * 4 + j] as i32 * wb[c * 4 + j] as i32;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Int8Linear, TILE};

    /// [`super::quantize_rows`] in AVX2: `vcvtps2dq` rounds half to even like the fallback's
    /// `round_ties_even`, so both give the same bytes. Rows whose width is not a multiple of 32
    /// take the fallback.
    #[target_feature(enable = "avx2")]
    pub unsafe fn quantize_rows_avx2(x: &[f32], k: usize, acts: &mut [u8], scales: &mut [f32]) {
        if !k.is_multiple_of(32) {
            return super::quantize_rows(x, k, acts, scales);
        }
        let sign = _mm256_set1_ps(-0.0);
        let (lo, hi, zero) = (
            _mm256_set1_epi32(-(super::ACT_MAX as i32)),
            _mm256_set1_epi32(super::ACT_MAX as i32),
            _mm256_set1_epi32(super::ACT_ZERO),
        );
        // packs interleave 128-bit lanes; this puts the 32 bytes back in order
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for ((row, out), s) in x.chunks(k).zip(acts.chunks_mut(k)).zip(scales.iter_mut()) {
            let p = row.as_ptr();
            let mut max = _mm256_setzero_ps();
            for i in (0..k).step_by(8) {
                // SAFETY: i + 8 <= k = row.len()
                let v = unsafe { _mm256_loadu_ps(p.add(i)) };
                max = _mm256_max_ps(max, _mm256_andnot_ps(sign, v));
            }
            let mut lanes = [0f32; 8];
            // SAFETY: lanes holds 8 floats
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), max) };
            let max = lanes.iter().fold(0f32, |a, &v| if v > a { v } else { a });
            *s = if max > 0.0 { max / super::ACT_MAX } else { 1.0 };
            let inv = _mm256_set1_ps(1.0 / *s);
            for i in (0..k).step_by(32) {
                let q: [__m256i; 4] = std::array::from_fn(|j| {
                    // SAFETY: i + 32 <= k
                    let v = unsafe { _mm256_loadu_ps(p.add(i + 8 * j)) };
                    let r = _mm256_cvtps_epi32(_mm256_mul_ps(v, inv));
                    _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(r, lo), hi), zero)
                });
                let words = _mm256_packus_epi16(
                    _mm256_packs_epi32(q[0], q[1]),
                    _mm256_packs_epi32(q[2], q[3]),
                );
                let bytes = _mm256_permutevar8x32_epi32(words, order);
                // SAFETY: i + 32 <= k = out.len()
                unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(i) as *mut _, bytes) };
            }
        }
    }

    /// [`super::dequantize_rows`] in AVX2, with the same operations in the same order (no FMA),
    /// so it gives the fallback's floats to the bit.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dequantize_rows_avx2(
        layer: &Int8Linear,
        acc: &[i32],
        act_scales: &[f32],
        y: &mut [f32],
    ) {
        let (n, m) = (layer.n, act_scales.len());
        assert!(acc.len() >= m * n && y.len() >= m * n);
        assert!(layer.offsets.len() >= n && layer.scales.len() >= n && layer.bias.len() >= n);
        for t in 0..n / TILE {
            for (r, &s) in act_scales.iter().enumerate() {
                let s = _mm256_set1_ps(s);
                for half in 0..2 {
                    let col = t * TILE + half * 8;
                    // SAFETY: col + 8 <= n, and tile t's row r is acc[(t·m + r)·16..][..16]
                    // (asserted above)
                    unsafe {
                        let sums = _mm256_loadu_si256(
                            acc.as_ptr().add((t * m + r) * TILE + half * 8) as *const _,
                        );
                        let offsets =
                            _mm256_loadu_si256(layer.offsets.as_ptr().add(col) as *const _);
                        let dot = _mm256_cvtepi32_ps(_mm256_sub_epi32(sums, offsets));
                        let scaled = _mm256_mul_ps(
                            _mm256_mul_ps(dot, s),
                            _mm256_loadu_ps(layer.scales.as_ptr().add(col)),
                        );
                        let out =
                            _mm256_add_ps(scaled, _mm256_loadu_ps(layer.bias.as_ptr().add(col)));
                        _mm256_storeu_ps(y.as_mut_ptr().add(r * n + col), out);
                    }
                }
            }
        }
    }

    /// Activation bytes `at..at + 4` as one i32. SAFETY: `at + 4 <= a.len()`.
    #[inline(always)]
    unsafe fn four_bytes(a: &[u8], at: usize) -> i32 {
        debug_assert!(at + 4 <= a.len());
        unsafe { std::ptr::read_unaligned(a.as_ptr().add(at) as *const i32) }
    }

    /// Rows per block: 8 accumulators, each weight load used 8 times.
    const ROWS: usize = super::ROW_BLOCK;

    #[target_feature(enable = "avx512f,avx512vnni")]
    pub unsafe fn tile_vnni(acts: &[u8], w: &[i8], m: usize, k: usize, acc: &mut [i32]) {
        assert!(acts.len() >= m * k && w.len() >= k * TILE && acc.len() >= m * TILE);
        let mut r = 0;
        while r < m {
            let rows = (m - r).min(ROWS);
            let mut sums = [_mm512_setzero_si512(); ROWS];
            for kb in 0..k / 4 {
                // SAFETY: w holds k/4 blocks of 64 bytes (asserted above)
                let wv = unsafe { _mm512_loadu_si512(w.as_ptr().add(kb * 64) as *const _) };
                for (i, s) in sums.iter_mut().enumerate().take(rows) {
                    // SAFETY: row r + i < m, so its bytes kb·4..kb·4 + 4 are in acts
                    let a = _mm512_set1_epi32(unsafe { four_bytes(acts, (r + i) * k + kb * 4) });
                    *s = _mm512_dpbusd_epi32(*s, a, wv);
                }
            }
            for (i, s) in sums.iter().enumerate().take(rows) {
                // SAFETY: acc holds m rows of 16
                unsafe { _mm512_storeu_si512(acc.as_mut_ptr().add((r + i) * TILE) as *mut _, *s) };
            }
            r += rows;
        }
    }

    /// [`tile_vnni`] for two adjacent tiles (`w` holds both): 8 rows × 2 tiles of accumulators.
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub unsafe fn tiles2_vnni(
        acts: &[u8],
        w: &[i8],
        m: usize,
        k: usize,
        acc0: &mut [i32],
        acc1: &mut [i32],
    ) {
        assert!(acts.len() >= m * k && w.len() >= 2 * k * TILE);
        assert!(acc0.len() >= m * TILE && acc1.len() >= m * TILE);
        let second = k * TILE;
        let mut r = 0;
        while r < m {
            let rows = (m - r).min(ROWS);
            let mut s0 = [_mm512_setzero_si512(); ROWS];
            let mut s1 = [_mm512_setzero_si512(); ROWS];
            for kb in 0..k / 4 {
                // SAFETY: w holds two tiles of k/4 blocks of 64 bytes (asserted above)
                let (w0, w1) = unsafe {
                    (
                        _mm512_loadu_si512(w.as_ptr().add(kb * 64) as *const _),
                        _mm512_loadu_si512(w.as_ptr().add(second + kb * 64) as *const _),
                    )
                };
                for i in 0..rows {
                    // SAFETY: row r + i < m
                    let a = _mm512_set1_epi32(unsafe { four_bytes(acts, (r + i) * k + kb * 4) });
                    s0[i] = _mm512_dpbusd_epi32(s0[i], a, w0);
                    s1[i] = _mm512_dpbusd_epi32(s1[i], a, w1);
                }
            }
            for i in 0..rows {
                // SAFETY: acc0 and acc1 hold m rows of 16
                unsafe {
                    _mm512_storeu_si512(acc0.as_mut_ptr().add((r + i) * TILE) as *mut _, s0[i]);
                    _mm512_storeu_si512(acc1.as_mut_ptr().add((r + i) * TILE) as *mut _, s1[i]);
                }
            }
            r += rows;
        }
    }

    /// AVX2 has no u8·i8 multiply-add that cannot saturate for 8-bit activations (`vpmaddubsw`
    /// adds two products into an i16), so it widens both to i16 and uses `vpmaddwd`: each i32
    /// lane is the exact sum of two products. The tile's weights are widened once, up front, and
    /// then read as memory operands; each row's 4 activation bytes are widened and broadcast with
    /// two vector instructions. Two rows at a time (4 accumulators each).
    #[target_feature(enable = "avx2")]
    pub unsafe fn tile_avx2(acts: &[u8], w: &[i8], m: usize, k: usize, acc: &mut [i32]) {
        assert!(acts.len() >= m * k && w.len() >= k * TILE && acc.len() >= m * TILE);
        let blocks = k / 4;
        let mut wide = vec![_mm256_setzero_si256(); blocks * 4];
        for (kb, out) in wide.chunks_mut(4).enumerate() {
            for (j, o) in out.iter_mut().enumerate() {
                // SAFETY: w holds k/4 blocks of 64 bytes (asserted above)
                *o = _mm256_cvtepi8_epi16(unsafe {
                    _mm_loadu_si128(w.as_ptr().add(kb * 64 + j * 16) as *const _)
                });
            }
        }
        let mut r = 0;
        while r < m {
            let rows = (m - r).min(2);
            // sums[row][j]: columns 4j..4j+4, two partial sums each
            let mut sums = [[_mm256_setzero_si256(); 4]; 2];
            for (kb, wv) in wide.chunks_exact(4).enumerate() {
                for (i, row) in sums.iter_mut().enumerate().take(rows) {
                    // SAFETY: row r + i < m, so its bytes kb·4..kb·4 + 4 are in acts
                    let bytes = unsafe { four_bytes(acts, (r + i) * k + kb * 4) };
                    let a = _mm256_broadcastq_epi64(_mm_cvtepu8_epi16(_mm_cvtsi32_si128(bytes)));
                    for (s, &wj) in row.iter_mut().zip(wv) {
                        *s = _mm256_add_epi32(*s, _mm256_madd_epi16(a, wj));
                    }
                }
            }
            for (i, row) in sums.iter().enumerate().take(rows) {
                let mut partial = [0i32; 32];
                for (j, s) in row.iter().enumerate() {
                    // SAFETY: partial holds 4 × 8 i32
                    unsafe { _mm256_storeu_si256(partial.as_mut_ptr().add(j * 8) as *mut _, *s) };
                }
                for c in 0..TILE {
                    acc[(r + i) * TILE + c] = partial[2 * c] + partial[2 * c + 1];
                }
            }
            r += rows;
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Module, Tensor};

    use super::*;

    fn layer(n: usize, k: usize) -> (Tensor, Tensor, Int8Linear) {
        let w = Tensor::randn(0f32, 0.05, (n, k), &Device::Cpu).unwrap();
        let b = Tensor::randn(0f32, 0.1, n, &Device::Cpu).unwrap();
        let q = Int8Linear::quantize(&w, Some(&b)).unwrap().unwrap();
        (w, b, q)
    }

    /// Every kernel this CPU can run gives exactly the portable kernel's integers: 48 columns
    /// (three single tiles) and 64 (VNNI's tile pairs), row counts not a multiple of the blocks.
    #[test]
    fn simd_kernels_equal_the_portable_one() {
        for n in [48, 64] {
            simd_equals_portable(n);
        }
    }

    fn simd_equals_portable(n: usize) {
        let (_, _, q) = layer(n, 384);
        let x = Tensor::randn(0f32, 1.0, (11, 384), &Device::Cpu).unwrap();
        let rows = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let portable = q.forward_rows(&rows, Kernel::Portable);
        let mut kernels = vec![];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                kernels.push(Kernel::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vnni")
            {
                kernels.push(Kernel::Avx512Vnni);
            }
        }
        for kernel in kernels {
            assert_eq!(q.forward_rows(&rows, kernel), portable, "{kernel:?}");
        }
        // again, on this thread's scratch buffers as the other kernels left them
        assert_eq!(q.forward_rows(&rows, Kernel::Portable), portable);
    }

    /// Close to the f32 layer: 8-bit weights and activations cost under 2% of the output's scale
    /// (relative RMS) on random data.
    #[test]
    fn close_to_the_f32_layer() {
        let (w, b, q) = layer(64, 384);
        let x = Tensor::randn(0f32, 1.0, (5, 384), &Device::Cpu).unwrap();
        let f32_out = candle_nn::Linear::new(w, Some(b)).forward(&x).unwrap();
        let ours = x.apply_op1_no_bwd(&q).unwrap();
        let rms = |t: &Tensor| {
            t.sqr()
                .unwrap()
                .mean_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                .sqrt()
        };
        let (err, scale) = (rms(&(&ours - &f32_out).unwrap()), rms(&f32_out));
        assert!(err / scale < 0.02, "relative RMS error {}", err / scale);
    }

    #[test]
    fn shapes_that_do_not_tile_stay_f32() {
        let w = Tensor::zeros((10, 384), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(Int8Linear::quantize(&w, None).unwrap().is_none());
    }
}
