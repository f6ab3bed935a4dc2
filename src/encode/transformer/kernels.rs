//! CPU kernels for the transformer encoders (BERT, the CLIP family) where candle's generic ops
//! cost more than the math: attention over short sequences (many tiny per-head matrices) and the
//! activations (the erf in GELU, the exp in quick GELU and tanh GELU: a scalar libm call per
//! element in candle). All are plain loops that the compiler vectorises; on x86-64 they are
//! compiled a second time for AVX2+FMA and chosen at run time.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape};
use rayon::prelude::*;

use crate::encode::cpu::contiguous_f32;

/// erf for f32 as a rational function of x (Eigen's/XLA's `fast_erf`): only multiplies, adds
/// and one divide, so a loop of it vectorises. Max error ~1e-7 against f64 erf.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2.mul_add(-2.726_142_3e-10, 2.770_681_4e-8);
    p = x2.mul_add(p, -2.101_024e-6);
    p = x2.mul_add(p, -5.692_506_4e-5);
    p = x2.mul_add(p, -7.349_906e-4);
    p = x2.mul_add(p, -2.954_6e-3);
    p = x2.mul_add(p, -1.609_603_3e-2);
    let mut q = x2.mul_add(-1.456_607_2e-5, -2.133_740_6e-4);
    q = x2.mul_add(q, -1.682_827e-3);
    q = x2.mul_add(q, -7.373_329e-3);
    q = x2.mul_add(q, -1.426_473_9e-2);
    x * p / q
}

/// e^x for f32 from 2^k and a degree-6 polynomial on the remainder (Cephes' expf): multiplies,
/// adds and a floor, so a loop of it vectorises where libm's `expf` is a call per element.
/// Relative error ~2e-7 on [-87, 88]; outside it the input is clamped (e^-87 ≈ 1.6e-38).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so k·LN2_HI is exact for the k that occur
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let k = x.mul_add(LOG2E, 0.5).floor();
    let r = k.mul_add(-LN2_LO, k.mul_add(-LN2_HI, x));
    let mut p = 1.987_569_1e-4f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    let y = p.mul_add(r * r, r) + 1.0;
    y * f32::from_bits(((k as i32 + 127) << 23) as u32)
}

/// The activations the transformer encoders use (`hidden_act` in their configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: x·Φ(x) with the exact erf (BERT, OpenCLIP's nn.GELU, LAION's CLIP).
    GeluErf,
    /// `gelu_pytorch_tanh`: GELU's tanh approximation (SigLIP).
    GeluTanh,
    /// `quick_gelu`: x·σ(1.702·x) (OpenAI's CLIP).
    QuickGelu,
}

impl Activation {
    /// From a config's `hidden_act`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "gelu" => Some(Self::GeluErf),
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Some(Self::GeluTanh),
            "quick_gelu" => Some(Self::QuickGelu),
            _ => None,
        }
    }

    /// Through our kernel on the CPU in f32; candle's ops elsewhere (GPU, half precision).
    pub fn apply(self, x: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
        if crate::device::cpu_kernels_for(x) {
            return x.contiguous()?.apply_op1_no_bwd(&self);
        }
        match self {
            Self::GeluErf => x.gelu_erf(),
            Self::GeluTanh => x.gelu(),
            Self::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
        }
    }
}

#[inline(always)]
fn activate_slice(act: Activation, xs: &mut [f32]) {
    match act {
        Activation::GeluErf => {
            for x in xs {
                *x = 0.5 * *x * (1.0 + erf(*x * std::f32::consts::FRAC_1_SQRT_2));
            }
        }
        Activation::GeluTanh => {
            // 0.5·x·(1 + tanh(u)) = x·σ(2u), u = √(2/π)·(x + 0.044715·x³)
            const C: f32 = 0.797_884_6;
            for x in xs {
                let u = C * x.mul_add(0.044_715 * *x * *x, *x);
                *x /= 1.0 + exp(-2.0 * u);
            }
        }
        Activation::QuickGelu => {
            for x in xs {
                *x /= 1.0 + exp(-1.702 * *x);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn activate_slice_avx2(act: Activation, xs: &mut [f32]) {
    activate_slice(act, xs)
}

fn activate_dispatch(act: Activation, xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::avx2_fma() {
        // SAFETY: the CPU supports the features this copy was compiled for.
        return unsafe { activate_slice_avx2(act, xs) };
    }
    activate_slice(act, xs)
}

impl CustomOp1 for Activation {
    fn name(&self) -> &'static str {
        match self {
            Self::GeluErf => "gelu-erf-fast",
            Self::GeluTanh => "gelu-tanh-fast",
            Self::QuickGelu => "quick-gelu-fast",
        }
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let mut out = contiguous_f32(storage, layout, self.name())?.to_vec();
        out.par_chunks_mut(16 * 1024)
            .for_each(|xs| activate_dispatch(*self, xs));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Multi-head self-attention from a fused `[B, L, 3·H·D]` QKV projection and a `[B, L]` 0/1 key
/// mask to the context `[B, L, H·D]`: softmax(q·kᵀ/√D over unmasked keys)·v per head. Masked keys
/// get exactly zero weight (HF adds the dtype's minimum before softmax: the same after rounding).
/// `causal`: position i also ignores keys after i (CLIP's text tower).
pub struct Attention {
    pub heads: usize,
    pub causal: bool,
}

/// `out[..N] = Σ a · data[at..at + N]` over `terms` (coefficient, offset), in their order, the
/// `N` sums held in registers for the whole loop (N = 32: four AVX2 vectors, four independent
/// add chains; N = 8: one; N = 1: a head width's tail that is not a multiple of 8).
#[inline(always)]
fn sum_block<const N: usize>(
    terms: impl Iterator<Item = (f32, usize)>,
    data: &[f32],
    out: &mut [f32],
) {
    let mut acc = [0f32; N];
    for (a, at) in terms {
        acc.iter_mut()
            .zip(&data[at..at + N])
            .for_each(|(s, &x)| *s += a * x);
    }
    out[..N].copy_from_slice(&acc);
}

/// [`sum_block`] over the widest of 32, 8 or 1 lanes that `width` leaves room for; the lanes it
/// took.
#[inline(always)]
fn sum_widest_block<I: Iterator<Item = (f32, usize)>>(
    width: usize,
    terms: I,
    data: &[f32],
    out: &mut [f32],
) -> usize {
    if width >= 32 {
        sum_block::<32>(terms, data, out);
        32
    } else if width >= 8 {
        sum_block::<8>(terms, data, out);
        8
    } else {
        sum_block::<1>(terms, data, out);
        1
    }
}

/// One head of one sequence, by the definition's arithmetic in a vectorisable order.
///
/// Scores: the head's keys are copied transposed (`[D, L]`, rows padded to a multiple of 8 with
/// zeros) and a query's scores are built 32 (then 8) keys at a time in registers as
/// Σₜ q[t] · keysᵀ[t]; the context: 32 (then 8) of its D columns at a time as Σⱼ wⱼ · vⱼ over
/// the head's values packed `[L, D]`. Every score and output still sums its products in the
/// definition's order (t = 0, 1, …; j = 0, 1, …), with no fused multiply-adds, so the result
/// equals the plain per-pair loop's bits on every CPU (unit test). That loop (one dependent
/// add per product, values read from rows 3·hidden floats apart) was 12.6% of CLIP ViT-B/32's
/// image tower at batch 32 and 15% of SigLIP base/16's on a 2-core AVX2 EPYC (perf).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_head(
    qkv: &[f32],
    mask: &[f32],
    causal: bool,
    l: usize,
    hidden: usize,
    head: usize,
    d: usize,
    out: &mut [f32],
) {
    let scale = 1.0 / (d as f32).sqrt();
    // this head's query (part 0), key (1) or value (2) of position `row`
    let at = |row: usize, part: usize| {
        let from = row * 3 * hidden + part * hidden + head * d;
        &qkv[from..from + d]
    };
    let padded = l.next_multiple_of(8);
    let mut keys_t = vec![0f32; d * padded];
    let mut values = vec![0f32; l * d];
    for j in 0..l {
        for (t, &x) in at(j, 1).iter().enumerate() {
            keys_t[t * padded + j] = x;
        }
        values[j * d..(j + 1) * d].copy_from_slice(at(j, 2));
    }
    let mut scores = vec![0f32; padded];
    for i in 0..l {
        let q = at(i, 0);
        let mut j0 = 0;
        while j0 < padded {
            let terms = q.iter().enumerate().map(|(t, &qt)| (qt, t * padded + j0));
            j0 += sum_widest_block(padded - j0, terms, &keys_t, &mut scores[j0..]);
        }
        let weights = &mut scores[..l];
        let mut max = f32::NEG_INFINITY;
        for (j, s) in weights.iter_mut().enumerate() {
            if mask[j] == 0.0 || (causal && j > i) {
                *s = f32::NEG_INFINITY;
            } else {
                *s *= scale;
                max = max.max(*s);
            }
        }
        // our exp (a polynomial: the loop vectorises) where libm's was a call per score, 3% of
        // SigLIP's image tower; masked keys get exactly zero weight
        for s in weights.iter_mut() {
            let e = exp(*s - max);
            *s = if *s == f32::NEG_INFINITY { 0.0 } else { e };
        }
        let total = weights.iter().fold(0.0f32, |sum, &p| sum + p);
        let o = &mut out[i * d..(i + 1) * d];
        if total == 0.0 {
            o.fill(0.0);
            continue;
        }
        weights.iter_mut().for_each(|p| *p /= total);
        let weights = &scores[..l];
        let mut c0 = 0;
        while c0 < d {
            let terms = weights
                .iter()
                .enumerate()
                .filter(|&(_, &w)| w != 0.0)
                .map(|(j, &w)| (w, j * d + c0));
            c0 += sum_widest_block(d - c0, terms, &values, &mut o[c0..]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_head_avx2(
    qkv: &[f32],
    mask: &[f32],
    causal: bool,
    l: usize,
    hidden: usize,
    head: usize,
    d: usize,
    out: &mut [f32],
) {
    attend_head(qkv, mask, causal, l, hidden, head, d, out)
}

#[allow(clippy::too_many_arguments)]
fn attend_dispatch(
    qkv: &[f32],
    mask: &[f32],
    causal: bool,
    l: usize,
    hidden: usize,
    head: usize,
    d: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::avx2_fma() {
        // SAFETY: the CPU supports the features this copy was compiled for.
        return unsafe { attend_head_avx2(qkv, mask, causal, l, hidden, head, d, out) };
    }
    attend_head(qkv, mask, causal, l, hidden, head, d, out)
}

impl CustomOp2 for Attention {
    fn name(&self) -> &'static str {
        "bert-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (qkv, mask) = (
            contiguous_f32(s1, l1, self.name())?,
            contiguous_f32(s2, l2, self.name())?,
        );
        let (b, l, three_hidden) = l1.shape().dims3()?;
        if l2.shape().dims2()? != (b, l) || three_hidden % (3 * self.heads) != 0 {
            candle_core::bail!(
                "attention: qkv {:?} and mask {:?} do not fit {} heads",
                l1.shape(),
                l2.shape(),
                self.heads
            )
        }
        let hidden = three_hidden / 3;
        let d = hidden / self.heads;
        // One task per (sequence, head); each writes an [L, D] block, scattered below.
        let blocks: Vec<Vec<f32>> = (0..b * self.heads)
            .into_par_iter()
            .map(|task| {
                let (seq, head) = (task / self.heads, task % self.heads);
                let mut out = vec![0f32; l * d];
                attend_dispatch(
                    &qkv[seq * l * three_hidden..(seq + 1) * l * three_hidden],
                    &mask[seq * l..(seq + 1) * l],
                    self.causal,
                    l,
                    hidden,
                    head,
                    d,
                    &mut out,
                );
                out
            })
            .collect();
        let mut out = vec![0f32; b * l * hidden];
        for (task, block) in blocks.iter().enumerate() {
            let (seq, head) = (task / self.heads, task % self.heads);
            for i in 0..l {
                let dst = (seq * l + i) * hidden + head * d;
                out[dst..dst + d].copy_from_slice(&block[i * d..(i + 1) * d]);
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((b, l, hidden))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erf_f64(x: f64) -> f64 {
        // Abramowitz & Stegun 7.1.26 is too coarse for a reference; integrate instead.
        let n = 20_000;
        let h = x / n as f64;
        let f = |t: f64| (-t * t).exp();
        let mut s = f(0.0) + f(x);
        for i in 1..n {
            s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn fast_erf_is_accurate() {
        let mut worst = 0f64;
        for i in -600..=600 {
            let x = i as f64 / 100.0;
            worst = worst.max((erf(x as f32) as f64 - erf_f64(x)).abs());
        }
        assert!(worst < 1e-6, "max |erf error| = {worst}");
    }

    #[test]
    fn fast_exp_and_activations_are_accurate() {
        let mut worst = 0f64;
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let rel = ((exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 5e-7, "max relative exp error = {worst}");
        let reference = |act: Activation, x: f64| -> f64 {
            match act {
                Activation::GeluErf => 0.5 * x * (1.0 + erf_f64(x / std::f64::consts::SQRT_2)),
                Activation::GeluTanh => {
                    let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
                    0.5 * x * (1.0 + u.tanh())
                }
                Activation::QuickGelu => x / (1.0 + (-1.702 * x).exp()),
            }
        };
        for act in [
            Activation::GeluErf,
            Activation::GeluTanh,
            Activation::QuickGelu,
        ] {
            let mut xs: Vec<f32> = (-1000..=1000).map(|i| i as f32 / 100.0).collect();
            let inputs = xs.clone();
            activate_slice(act, &mut xs);
            for (&x, &y) in inputs.iter().zip(&xs) {
                let r = reference(act, x as f64);
                assert!(
                    (y as f64 - r).abs() <= 1e-6 * (1.0 + r.abs()),
                    "{act:?}({x}) = {y}, expected {r}"
                );
            }
        }
    }

    #[test]
    fn attention_weights_ignore_masked_keys() {
        // one sequence, 2 positions, 1 head of width 1: q=k=1 everywhere; v = [10, 20]
        let qkv = [1.0, 1.0, 10.0, 1.0, 1.0, 20.0];
        let mut out = [0.0; 2];
        attend_head(&qkv, &[1.0, 0.0], false, 2, 1, 0, 1, &mut out);
        assert_eq!(out, [10.0, 10.0]);
        attend_head(&qkv, &[1.0, 1.0], false, 2, 1, 0, 1, &mut out);
        assert!((out[0] - 15.0).abs() < 1e-5 && (out[1] - 15.0).abs() < 1e-5);
        // causal: the first position sees only itself, the second both
        attend_head(&qkv, &[1.0, 1.0], true, 2, 1, 0, 1, &mut out);
        assert!((out[0] - 10.0).abs() < 1e-5 && (out[1] - 15.0).abs() < 1e-5);
    }

    /// The definition, one dot product per (query, key): what the vectorised kernel must equal
    /// bit for bit (the same products summed in the same order).
    fn attend_head_by_definition(
        qkv: &[f32],
        mask: &[f32],
        causal: bool,
        (l, hidden, head, d): (usize, usize, usize, usize),
    ) -> Vec<f32> {
        let stride = 3 * hidden;
        let at = |row: usize, part: usize| {
            let from = row * stride + part * hidden + head * d;
            &qkv[from..from + d]
        };
        let mut out = vec![0f32; l * d];
        for i in 0..l {
            let scores: Vec<f32> = (0..l)
                .map(|j| {
                    if mask[j] == 0.0 || (causal && j > i) {
                        return f32::NEG_INFINITY;
                    }
                    let dot = at(i, 0)
                        .iter()
                        .zip(at(j, 1))
                        .fold(0.0f32, |s, (a, b)| s + a * b);
                    dot * (1.0 / (d as f32).sqrt())
                })
                .collect();
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let weights: Vec<f32> = scores
                .iter()
                .map(|&s| {
                    if s == f32::NEG_INFINITY {
                        0.0
                    } else {
                        exp(s - max)
                    }
                })
                .collect();
            let total: f32 = weights.iter().fold(0.0, |a, b| a + b);
            for (j, &p) in weights.iter().enumerate() {
                if p != 0.0 {
                    let v = at(j, 2);
                    for t in 0..d {
                        out[i * d + t] += p / total * v[t];
                    }
                }
            }
        }
        out
    }

    #[test]
    fn attention_equals_the_definition_bit_for_bit() {
        let mut rng = crate::rng::Rng::new(5);
        // lengths and widths around the 8- and 32-lane blocks (44 = 32 + 8 + a scalar tail), the
        // width of every CLIP-family head (64) and a ViT-B/32 image (50 positions)
        for (l, heads, d) in [
            (1, 1, 4),
            (7, 2, 16),
            (9, 3, 8),
            (3, 1, 44),
            (17, 2, 64),
            (50, 2, 64),
        ] {
            let hidden = heads * d;
            let qkv: Vec<f32> = (0..l * 3 * hidden).map(|_| rng.normal()).collect();
            let mask: Vec<f32> = (0..l).map(|j| if j % 5 == 4 { 0.0 } else { 1.0 }).collect();
            for (head, causal) in (0..heads).flat_map(|h| [(h, false), (h, true)]) {
                let expected = attend_head_by_definition(&qkv, &mask, causal, (l, hidden, head, d));
                for kernel in [attend_head, attend_dispatch] {
                    let mut got = vec![0.0; l * d];
                    kernel(&qkv, &mask, causal, l, hidden, head, d, &mut got);
                    assert_eq!(got, expected, "l {l}, head {head}, causal {causal}");
                }
            }
        }
    }

    /// The copies chosen at run time (AVX2+FMA where present) agree with the portable loops
    /// that CPUs without them (and `XMODAL_PORTABLE_KERNELS=1`) run.
    #[test]
    fn dispatched_kernels_match_the_portable_ones() {
        let mut rng = crate::rng::Rng::new(11);
        for act in [
            Activation::GeluErf,
            Activation::GeluTanh,
            Activation::QuickGelu,
        ] {
            let mut xs: Vec<f32> = (0..1027).map(|_| 3.0 * rng.normal()).collect();
            let mut portable = xs.clone();
            activate_dispatch(act, &mut xs);
            activate_slice(act, &mut portable);
            for (a, b) in xs.iter().zip(&portable) {
                assert!(
                    (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                    "{act:?} {a} vs {b}"
                );
            }
        }
        // 7 positions, 4 heads of 16, the last two keys masked
        let (l, heads, d) = (7, 4, 16);
        let hidden = heads * d;
        let qkv: Vec<f32> = (0..l * 3 * hidden).map(|_| rng.normal()).collect();
        let mask = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0];
        for (head, causal) in (0..heads).flat_map(|h| [(h, false), (h, true)]) {
            let (mut a, mut b) = (vec![0.0; l * d], vec![0.0; l * d]);
            attend_dispatch(&qkv, &mask, causal, l, hidden, head, d, &mut a);
            attend_head(&qkv, &mask, causal, l, hidden, head, d, &mut b);
            for (x, y) in a.iter().zip(&b) {
                assert!(
                    (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                    "head {head}: {x} vs {y}"
                );
            }
        }
    }
}
