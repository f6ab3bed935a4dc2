//! f32 dense layers on the CPU with the weight packed once at load into 32-column panels
//! (`[⌈n/32⌉][k][32]`, zero-padded), the layout the micro-kernel reads: AVX-512 (12 rows × 32
//! columns in registers), AVX2+FMA (6 × 16, twice) or portable, chosen at run time. Rows are
//! packed per chunk so a step of the sum reads one contiguous run, the sum runs in L1-sized
//! blocks of the panel, the bias is added as a tile is stored, and the threads split the panels.
//!
//! Why our own kernel: the `gemm` crate packs the weight again on every call (it has no
//! pre-packed interface), which at batch 1 costs as much as the product — a 768×3072 weight is
//! 9.4 MB to read and write again for the 50 rows of one ViT-B/32 image. `xmodal embed
//! throughput`, CLIP ViT-B/32, three alternating rounds against gemm's AVX-512 kernels (AMD EPYC
//! with AVX-512, 2 cores), items/s: text batch 1 41/43/52 → 63/94/92, batch 32 121/113/146 →
//! 131/133/111; image batch 1 11.4/8.0/13.4 → 10.0/14.3/17.4, batch 32 17.2/19.2/18.7 →
//! 15.2/16.3/17.9 (large products, where gemm's blocking is a little ahead, stay here so the
//! weight is held once).

use std::{ops::Range, sync::Arc};

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::encode::cpu::contiguous_rows;

/// Columns per panel: two AVX-512 registers, four AVX2 ones.
const NR: usize = 32;
/// Rows per pass over the panels: a multiple of every kernel's row blocking (12, 6, 4).
const ROW_CHUNK: usize = 192;
/// Inputs per block of a sum (see `PanelLinear::panel`).
const K_BLOCK: usize = 128;

/// A `Linear` (`y = x·Wᵀ + b`) in f32 with its weight in panels.
#[derive(Clone)]
pub struct PanelLinear {
    n: usize,
    k: usize,
    panels: Arc<[f32]>,
    bias: Arc<[f32]>,
}

impl PanelLinear {
    /// From an f32 `[n, k]` weight and optional `[n]` bias.
    pub fn new(weight: &Tensor, bias: Option<&Tensor>) -> candle_core::Result<Self> {
        let (n, k) = weight.dims2()?;
        let w: Vec<f32> = weight.flatten_all()?.to_vec1()?;
        let count = n.div_ceil(NR);
        let mut panels = vec![0f32; count * k * NR];
        for (col, row) in w.chunks(k.max(1)).enumerate().take(n) {
            let (p, j) = (col / NR, col % NR);
            for (kk, &v) in row.iter().enumerate() {
                panels[(p * k + kk) * NR + j] = v;
            }
        }
        let bias = match bias {
            Some(b) => b.to_vec1()?,
            None => vec![0.0; n],
        };
        Ok(Self {
            n,
            k,
            panels: panels.into(),
            bias: bias.into(),
        })
    }

    /// `x`: `[m, k]` rows → `[m, n]`, [`ROW_CHUNK`] rows at a time: the chunk's rows are packed
    /// tile by tile (`[k][rows]`, so a step of the sum reads one contiguous run instead of rows
    /// `k` floats apart, which for k = 3072 all fall in one L1 set), then the threads split the
    /// panels over them.
    fn forward_rows(&self, x: &[f32], kernel: Kernel) -> Vec<f32> {
        let (n, k) = (self.n, self.k);
        let m = x.len() / k.max(1);
        let mut y = vec![0f32; m * n];
        let count = n.div_ceil(NR);
        let tasks = (2 * rayon::current_num_threads()).min(count).max(1);
        let per_task = count.div_ceil(tasks);
        let out = Out(y.as_mut_ptr());
        let height = kernel.rows();
        // taken out, not borrowed, across the parallel part: a rayon worker waiting in it may
        // run another layer's forward on this thread
        let mut packed = PACKED_ROWS.take();
        for first in (0..m).step_by(ROW_CHUNK) {
            let rows = first..(first + ROW_CHUNK).min(m);
            pack_rows(&x[rows.start * k..rows.end * k], k, height, &mut packed);
            let packed = &packed[..rows.len() * k];
            (0..count.div_ceil(per_task)).into_par_iter().for_each(|t| {
                for p in t * per_task..((t + 1) * per_task).min(count) {
                    self.panel(packed, rows.clone(), p, kernel, out);
                }
            });
        }
        PACKED_ROWS.set(packed);
        y
    }

    /// Rows `rows` (packed by [`pack_rows`]) times panel `p`, plus bias, into columns `p·32..`
    /// of `out`. The sum runs in blocks of [`K_BLOCK`] inputs: a block of the panel (16 KiB)
    /// stays in L1 while every tile of the chunk passes over it.
    fn panel(&self, packed: &[f32], rows: Range<usize>, p: usize, kernel: Kernel, out: Out) {
        let (n, k) = (self.n, self.k);
        let w = &self.panels[p * k * NR..(p + 1) * k * NR];
        let cols = (n - p * NR).min(NR);
        let bias = &self.bias[p * NR..p * NR + cols];
        let mut sums = [[0f32; NR]; ROW_CHUNK];
        let sums = &mut sums[..rows.len()];
        for k0 in (0..k).step_by(K_BLOCK) {
            let ks = k0..(k0 + K_BLOCK).min(k);
            let block = &w[ks.start * NR..ks.end * NR];
            for (t, tile) in sums.chunks_mut(kernel.rows()).enumerate() {
                let first = t * kernel.rows() * k;
                let a = &packed[first..first + tile.len() * k];
                kernel.tile(a, k, ks.clone(), block, tile);
            }
        }
        for (r, sums) in sums.iter().enumerate() {
            // SAFETY: `out` is `m × n`; this task alone writes columns p·32..p·32+cols (tasks
            // own disjoint panels) of row rows.start + r < m, and `y` outlives the tasks.
            let row = unsafe {
                std::slice::from_raw_parts_mut(out.0.add((rows.start + r) * n + p * NR), cols)
            };
            for ((o, s), b) in row.iter_mut().zip(sums).zip(bias) {
                *o = s + b;
            }
        }
    }
}

/// `x`'s rows (`k` wide) in tiles of `height` rows, each tile `[k][h]` (h = its row count).
fn pack_rows(x: &[f32], k: usize, height: usize, packed: &mut Vec<f32>) {
    packed.resize(packed.len().max(x.len()), 0.0);
    for (tile, out) in x.chunks(height * k).zip(packed.chunks_mut(height * k)) {
        let h = tile.len() / k;
        for (r, row) in tile.chunks(k).enumerate() {
            for (kk, &v) in row.iter().enumerate() {
                out[kk * h + r] = v;
            }
        }
    }
}

thread_local! {
    /// The packed rows of the chunk in flight, kept between calls (a forward pass then
    /// allocates no packing buffer after its first layer); at most ROW_CHUNK × k floats.
    static PACKED_ROWS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The output's base pointer, shared by tasks that write disjoint columns.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: see `PanelLinear::panel`: tasks write disjoint elements and the buffer outlives them.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl CustomOp1 for PanelLinear {
    fn name(&self) -> &'static str {
        "panel-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, m) = contiguous_rows(storage, layout, self.k, "panel-linear")?;
        Ok((
            CpuStorage::F32(self.forward_rows(x, Kernel::best())),
            Shape::from((m, self.n)),
        ))
    }
}

/// Which micro-kernel sums a tile. They differ in summation (FMA or not, register blocking), so
/// their results agree to rounding, not to the bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Portable,
    Avx2,
    Avx512,
}

impl Kernel {
    pub fn best() -> Self {
        if crate::simd::avx512f() {
            Self::Avx512
        } else if crate::simd::avx2_fma() {
            Self::Avx2
        } else {
            Self::Portable
        }
    }

    fn rows(self) -> usize {
        match self {
            Self::Avx512 => 12,
            Self::Avx2 => 6,
            Self::Portable => 4,
        }
    }

    /// `tile[r][j] += Σ_{kk ∈ ks} a[kk·h + r] · block[(kk − ks.start)·32 + j]` for a tile of
    /// `h = tile.len()` ≤ `self.rows()` rows packed `[k][h]` in `a`; the first block
    /// (`ks.start == 0`) starts from zero.
    fn tile(self, a: &[f32], k: usize, ks: Range<usize>, block: &[f32], tile: &mut [[f32; NR]]) {
        assert!(
            tile.len() <= self.rows()
                && a.len() == tile.len() * k
                && ks.end <= k
                && block.len() == ks.len() * NR
        );
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: chosen by `best()` only where the CPU has AVX-512 F; bounds checked above
            Self::Avx512 => unsafe { x86::tile_avx512(a, ks, block, tile) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: chosen only where the CPU has AVX2 and FMA; bounds checked above
            Self::Avx2 => unsafe { x86::tile_avx2(a, ks, block, tile) },
            _ => tile_portable(a, ks, block, tile),
        }
    }
}

fn tile_portable(a: &[f32], ks: Range<usize>, block: &[f32], tile: &mut [[f32; NR]]) {
    let h = tile.len();
    if ks.start == 0 {
        tile.fill([0.0; NR]);
    }
    for (kk, wk) in ks.zip(block.chunks_exact(NR)) {
        for (r, sums) in tile.iter_mut().enumerate() {
            let v = a[kk * h + r];
            for (s, &b) in sums.iter_mut().zip(wk) {
                *s += v * b;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::{arch::x86_64::*, ops::Range};

    use super::NR;

    /// Up to 12 rows × 32 columns in 24 registers: per input, two weight loads and one
    /// broadcast per row feed two FMAs per row.
    ///
    /// # Safety
    /// AVX-512 F; `a` holds `tile.len()` ≤ 12 rows packed `[k][h]`, `block` = `ks.len()` × 32.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile_avx512(a: &[f32], ks: Range<usize>, block: &[f32], tile: &mut [[f32; NR]]) {
        match tile.len() {
            1 => rows_avx512::<1>(a, ks, block, tile),
            2 => rows_avx512::<2>(a, ks, block, tile),
            3 => rows_avx512::<3>(a, ks, block, tile),
            4 => rows_avx512::<4>(a, ks, block, tile),
            5 => rows_avx512::<5>(a, ks, block, tile),
            6 => rows_avx512::<6>(a, ks, block, tile),
            7 => rows_avx512::<7>(a, ks, block, tile),
            8 => rows_avx512::<8>(a, ks, block, tile),
            9 => rows_avx512::<9>(a, ks, block, tile),
            10 => rows_avx512::<10>(a, ks, block, tile),
            11 => rows_avx512::<11>(a, ks, block, tile),
            _ => rows_avx512::<12>(a, ks, block, tile),
        }
    }

    /// One tile of `R` rows, its accumulators in registers (the loops over `R` unroll).
    #[target_feature(enable = "avx512f")]
    unsafe fn rows_avx512<const R: usize>(
        a: &[f32],
        ks: Range<usize>,
        block: &[f32],
        tile: &mut [[f32; NR]],
    ) {
        let (ap, wp) = (a.as_ptr().add(ks.start * R), block.as_ptr());
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        if ks.start > 0 {
            for (acc, sums) in acc.iter_mut().zip(tile.iter()) {
                acc[0] = _mm512_loadu_ps(sums.as_ptr());
                acc[1] = _mm512_loadu_ps(sums.as_ptr().add(16));
            }
        }
        for kk in 0..ks.len() {
            let b0 = _mm512_loadu_ps(wp.add(kk * NR));
            let b1 = _mm512_loadu_ps(wp.add(kk * NR + 16));
            for (r, acc) in acc.iter_mut().enumerate() {
                let v = _mm512_set1_ps(*ap.add(kk * R + r));
                acc[0] = _mm512_fmadd_ps(v, b0, acc[0]);
                acc[1] = _mm512_fmadd_ps(v, b1, acc[1]);
            }
        }
        for (sums, acc) in tile.iter_mut().zip(&acc) {
            _mm512_storeu_ps(sums.as_mut_ptr(), acc[0]);
            _mm512_storeu_ps(sums.as_mut_ptr().add(16), acc[1]);
        }
    }

    /// Up to 6 rows × 16 columns in 12 registers, twice per panel (AVX2 has 16 registers: whole
    /// 32-column rows would leave room for only 2 rows).
    ///
    /// # Safety
    /// AVX2 and FMA; `a` holds `tile.len()` ≤ 6 rows packed `[k][h]`, `block` = `ks.len()` × 32.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile_avx2(a: &[f32], ks: Range<usize>, block: &[f32], tile: &mut [[f32; NR]]) {
        for half in [0, 16] {
            match tile.len() {
                1 => rows_avx2::<1>(a, ks.clone(), &block[half..], half, tile),
                2 => rows_avx2::<2>(a, ks.clone(), &block[half..], half, tile),
                3 => rows_avx2::<3>(a, ks.clone(), &block[half..], half, tile),
                4 => rows_avx2::<4>(a, ks.clone(), &block[half..], half, tile),
                5 => rows_avx2::<5>(a, ks.clone(), &block[half..], half, tile),
                _ => rows_avx2::<6>(a, ks.clone(), &block[half..], half, tile),
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows_avx2<const R: usize>(
        a: &[f32],
        ks: Range<usize>,
        block: &[f32],
        half: usize,
        tile: &mut [[f32; NR]],
    ) {
        let (ap, wp) = (a.as_ptr().add(ks.start * R), block.as_ptr());
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        if ks.start > 0 {
            for (acc, sums) in acc.iter_mut().zip(tile.iter()) {
                acc[0] = _mm256_loadu_ps(sums.as_ptr().add(half));
                acc[1] = _mm256_loadu_ps(sums.as_ptr().add(half + 8));
            }
        }
        for kk in 0..ks.len() {
            let b0 = _mm256_loadu_ps(wp.add(kk * NR));
            let b1 = _mm256_loadu_ps(wp.add(kk * NR + 8));
            for (r, acc) in acc.iter_mut().enumerate() {
                let v = _mm256_set1_ps(*ap.add(kk * R + r));
                acc[0] = _mm256_fmadd_ps(v, b0, acc[0]);
                acc[1] = _mm256_fmadd_ps(v, b1, acc[1]);
            }
        }
        for (sums, acc) in tile.iter_mut().zip(&acc) {
            _mm256_storeu_ps(sums.as_mut_ptr().add(half), acc[0]);
            _mm256_storeu_ps(sums.as_mut_ptr().add(half + 8), acc[1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::rng::Rng;

    /// Every kernel this CPU can run, and the portable one, against the product by definition,
    /// at row counts that leave tails of every kernel's blocking (and, at 200, a second row
    /// chunk), inputs that span several sum blocks, and widths that leave a partial panel.
    #[test]
    fn panel_kernels_equal_the_definition() {
        let mut rng = Rng::new(11);
        let mut values = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.range(-1.0, 1.0)).collect() };
        let mut kernels = vec![Kernel::Portable, Kernel::best()];
        if crate::simd::avx2_fma() {
            kernels.push(Kernel::Avx2);
        }
        for (m, k, n) in [(1, 64, 48), (7, 96, 40), (13, 300, 96), (200, 260, 70)] {
            let (x, w, b) = (values(m * k), values(n * k), values(n));
            let layer = PanelLinear::new(
                &Tensor::from_slice(&w, (n, k), &Device::Cpu).unwrap(),
                Some(&Tensor::from_slice(&b, n, &Device::Cpu).unwrap()),
            )
            .unwrap();
            for &kernel in &kernels {
                let y = layer.forward_rows(&x, kernel);
                for r in 0..m {
                    for c in 0..n {
                        let want: f64 = b[c] as f64
                            + (0..k)
                                .map(|i| x[r * k + i] as f64 * w[c * k + i] as f64)
                                .sum::<f64>();
                        let got = y[r * n + c] as f64;
                        assert!(
                            (got - want).abs() < 1e-4,
                            "{kernel:?} ({m}, {k}, {n}) [{r}, {c}]: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
