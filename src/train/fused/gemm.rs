//! Row-major f32 matrix products through `gemm`, the kernel candle's CPU backend calls, without a
//! tensor graph around them: no allocation, no input gradient nobody asked for.

/// A read-only matrix view: element `(r, c)` is `data[r * row_stride + c * col_stride]`, so a
/// transpose is the same slice with the strides swapped.
#[derive(Clone, Copy)]
pub struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    /// `data` as a row-major `[rows, cols]` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(
            data.len(),
            rows * cols,
            "matrix data does not fit its shape"
        );
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// Below this many multiply-adds one thread is faster than waking the pool.
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// `dst = lhs · rhs`, or `dst += lhs · rhs` when `accumulate`; `dst` is row-major
/// `[lhs.rows, rhs.cols]`.
pub fn matmul(dst: &mut [f32], accumulate: bool, lhs: View, rhs: View) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "inner dimensions differ");
    assert_eq!(dst.len(), m * n, "destination does not fit the product");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    let parallelism = if m * n * k >= PARALLEL_MIN_MACS {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: View::new checked each operand's slice holds rows × cols elements at its strides
    // (a transpose only swaps them), the asserts above tie the shapes together, and `dst` is a
    // distinct, exclusively borrowed slice of m × n elements.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn products_and_transposes_match_a_naive_loop() {
        let mut rng = crate::rng::Rng::new(3);
        // one shape small enough for one thread, one large enough for the pool
        for (m, k, n) in [(3, 5, 4), (96, 130, 100)] {
            let a: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.normal()).collect();
            let want = naive(&a, &b, m, k, n);
            let mut got = vec![0f32; m * n];
            matmul(&mut got, false, View::new(&a, m, k), View::new(&b, k, n));
            close(&got, &want);
            // a stored transposed: aᵀ is [k, m]; (aᵀ)ᵀ · b is the same product
            let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            let mut got_t = vec![1f32; m * n];
            matmul(
                &mut got_t,
                false,
                View::new(&at, k, m).t(),
                View::new(&b, k, n),
            );
            close(&got_t, &want);
            // accumulate adds onto what is there
            matmul(&mut got_t, true, View::new(&a, m, k), View::new(&b, k, n));
            close(&got_t, &want.iter().map(|x| 2.0 * x).collect::<Vec<_>>());
        }
    }

    fn close(a: &[f32], b: &[f32]) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-3 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }
}
