//! Inner products, the only distance the indexes use (vectors are L2-normalised, so cosine
//! similarity is the inner product), f32 against f32. AVX2+FMA is chosen at run time; other CPUs
//! (and `XMODAL_PORTABLE_KERNELS=1`, see `crate::simd`) get a portable loop.

/// A dot-product kernel: picked once per index, then called through the pointer in hot loops.
pub type DotFn = fn(&[f32], &[f32]) -> f32;

/// The fastest kernel this CPU runs.
pub fn kernel() -> DotFn {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::simd::avx2_fma() {
            return dot_avx2_checked;
        }
    }
    dot_portable
}

/// Sum of `a[i] * b(i)` over `i < min(a.len(), b_len)`, with `load_b(i)` giving 8 lanes of `b`
/// from `i` and `scalar_b(i)` one element for the tail. Four accumulators hide FMA latency.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn fma_sum(
    a: &[f32],
    b_len: usize,
    load_b: impl Fn(usize) -> std::arch::x86_64::__m256,
    scalar_b: impl Fn(usize) -> f32,
) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b_len);
    let pa = a.as_ptr();
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut acc2 = _mm256_setzero_ps();
    let mut acc3 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 32 <= n {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), load_b(i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), load_b(i + 8), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 16)), load_b(i + 16), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 24)), load_b(i + 24), acc3);
        i += 32;
    }
    while i + 8 <= n {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), load_b(i), acc0);
        i += 8;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
    let x = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    let x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
    let mut r = _mm_cvtss_f32(x);
    while i < n {
        r += *pa.add(i) * scalar_b(i);
        i += 1;
    }
    r
}

pub fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
fn dot_avx2_checked(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: only handed out by `kernel()` after detecting avx2 and fma.
    unsafe { dot_avx2(a, b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let pb = b.as_ptr();
    fma_sum(a, b.len(), |i| _mm256_loadu_ps(pb.add(i)), |i| *pb.add(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_agree_with_a_plain_sum_at_every_length() {
        let mut rng = crate::rng::Rng::new(3);
        for n in [0usize, 1, 7, 8, 9, 31, 32, 33, 64, 100, 512, 1027] {
            let a: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            for (name, f) in [("portable", dot_portable as DotFn), ("chosen", kernel())] {
                let got = f(&a, &b) as f64;
                assert!(
                    (got - plain).abs() <= 1e-4 * (1.0 + plain.abs()),
                    "{name} n={n}: {got} vs {plain}"
                );
            }
        }
    }
}
