//! int8 dense layers for BERT on the CPU (`--text-quantization int8`).
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

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::encode::cpu::contiguous_f32;

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

    /// `x`: `[m, k]` f32 rows → `[m, n]`.
    fn forward_rows(&self, x: &[f32], kernel: Kernel) -> Vec<f32> {
        let (n, k) = (self.n, self.k);
        let m = x.len() / k;
        let mut acts = vec![0u8; m * k];
        let mut act_scales = vec![0f32; m];
        for ((row, out), s) in x
            .chunks(k)
            .zip(acts.chunks_mut(k))
            .zip(act_scales.iter_mut())
        {
            let max = row.iter().fold(0f32, |a, v| a.max(v.abs()));
            *s = if max > 0.0 { max / ACT_MAX } else { 1.0 };
            let inv = 1.0 / *s;
            for (v, o) in row.iter().zip(out.iter_mut()) {
                *o = ((v * inv).round().clamp(-ACT_MAX, ACT_MAX) as i32 + ACT_ZERO) as u8;
            }
        }
        let mut y = vec![0f32; m * n];
        // one task per 16-column tile: each reads its weights once for all rows
        // VNNI takes two tiles at once where they pair up: each broadcast activation then feeds
        // two multiply-adds (see the module header for what that measured)
        let group = if kernel == Kernel::Avx512Vnni && n % (2 * TILE) == 0 {
            2
        } else {
            1
        };
        let tiles: Vec<(usize, Vec<i32>)> = (0..n / (group * TILE))
            .into_par_iter()
            .flat_map_iter(|g| {
                let t = g * group;
                let w = &self.packed[t * k * TILE..(t + group) * k * TILE];
                let mut acc: Vec<Vec<i32>> = (0..group).map(|_| vec![0i32; m * TILE]).collect();
                match acc.as_mut_slice() {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: group 2 only with the VNNI kernel, chosen where the CPU has it
                    [a0, a1] => unsafe { x86::tiles2_vnni(&acts, w, m, k, a0, a1) },
                    [a0] => kernel.run(&acts, w, m, k, a0),
                    _ => unreachable!("group is 1 or 2"),
                }
                acc.into_iter().enumerate().map(move |(i, a)| (t + i, a))
            })
            .collect();
        for (t, acc) in tiles {
            for r in 0..m {
                for c in 0..TILE {
                    let col = t * TILE + c;
                    let dot = acc[r * TILE + c] - self.offsets[col];
                    y[r * n + col] = dot as f32 * act_scales[r] * self.scales[col] + self.bias[col];
                }
            }
        }
        y
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
        let x = contiguous_f32(storage, layout, "int8-linear")?;
        let (m, k) = layout.shape().dims2()?;
        if k != self.k {
            candle_core::bail!("int8-linear: input has {k} features, the layer {}", self.k)
        }
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
        #[cfg(target_arch = "x86_64")]
        {
            if crate::simd::avx2_fma() {
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
                {
                    return Self::Avx512Vnni;
                }
                return Self::Avx2;
            }
        }
        Self::Portable
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

    use super::TILE;

    /// Activation bytes `at..at + 4` as one i32. SAFETY: `at + 4 <= a.len()`.
    #[inline(always)]
    unsafe fn four_bytes(a: &[u8], at: usize) -> i32 {
        debug_assert!(at + 4 <= a.len());
        unsafe { std::ptr::read_unaligned(a.as_ptr().add(at) as *const i32) }
    }

    /// Rows per block: 8 accumulators, each weight load used 8 times.
    const ROWS: usize = 8;

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
    /// lane is the exact sum of two products. Two rows at a time (4 accumulators each, 16 ymm).
    #[target_feature(enable = "avx2")]
    pub unsafe fn tile_avx2(acts: &[u8], w: &[i8], m: usize, k: usize, acc: &mut [i32]) {
        assert!(acts.len() >= m * k && w.len() >= k * TILE && acc.len() >= m * TILE);
        let mut r = 0;
        while r < m {
            let rows = (m - r).min(2);
            // sums[row][j]: columns 4j..4j+4, two partial sums each
            let mut sums = [[_mm256_setzero_si256(); 4]; 2];
            for kb in 0..k / 4 {
                // SAFETY: w holds k/4 blocks of 64 bytes (asserted above)
                let wv: [__m256i; 4] = std::array::from_fn(|j| unsafe {
                    _mm256_cvtepi8_epi16(_mm_loadu_si128(
                        w.as_ptr().add(kb * 64 + j * 16) as *const _
                    ))
                });
                for (i, row) in sums.iter_mut().enumerate().take(rows) {
                    // SAFETY: row r + i < m
                    let b = unsafe { four_bytes(acts, (r + i) * k + kb * 4) } as u32 as u64;
                    let widened = (b & 0xff)
                        | ((b >> 8) & 0xff) << 16
                        | ((b >> 16) & 0xff) << 32
                        | ((b >> 24) & 0xff) << 48;
                    let a = _mm256_set1_epi64x(widened as i64);
                    for (s, wj) in row.iter_mut().zip(wv) {
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
    }

    /// Close to the f32 layer: 8-bit weights and activations cost under 2% of the output's scale
    /// (relative RMS) on random data.
    #[test]
    fn close_to_the_f32_layer() {
        let (w, b, q) = layer(64, 384);
        let x = Tensor::randn(0f32, 1.0, (5, 384), &Device::Cpu).unwrap();
        let f32_out = candle_nn::Linear::new(w, Some(b)).forward(&x).unwrap();
        let ours = x.apply_op1_no_bwd(&q).unwrap();
        let err = (&ours - &f32_out)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .sqrt();
        let scale = f32_out
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .sqrt();
        assert!(err / scale < 0.02, "relative RMS error {}", err / scale);
    }

    #[test]
    fn shapes_that_do_not_tile_stay_f32() {
        let w = Tensor::zeros((10, 384), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(Int8Linear::quantize(&w, None).unwrap().is_none());
    }
}
