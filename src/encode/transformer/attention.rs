//! Multi-head self-attention from a fused QKV projection: our kernel on the CPU in f32, candle's
//! generic ops elsewhere (a GPU, half precision), with the same masking.

use candle_core::{DType, Tensor};

use super::kernels::Attention;

/// `qkv` `[B, L, 3·H]` (queries, keys, values), `mask` `[B, L]` 0/1 over keys in `qkv`'s dtype →
/// the context `[B, L, H]`. `causal`: position i also ignores keys after i.
pub fn self_attention(
    qkv: &Tensor,
    mask: &Tensor,
    heads: usize,
    causal: bool,
) -> candle_core::Result<Tensor> {
    if crate::device::cpu_kernels_for(qkv) {
        return qkv.apply_op2_no_bwd(mask, &Attention { heads, causal });
    }
    let (b, l, three_hidden) = qkv.dims3()?;
    let hidden = three_hidden / 3;
    let d = hidden / heads;
    let split = |i: usize| {
        qkv.narrow(2, i * hidden, hidden)?
            .reshape((b, l, heads, d))?
            .transpose(1, 2)?
            .contiguous()
    };
    let (q, k, v) = (split(0)?, split(1)?, split(2)?);
    let scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?;
    // The dtype's most negative finite number, as transformers adds: in f16, f32::MIN would
    // be -inf and 0·(-inf) a NaN at every real token.
    let lowest = match mask.dtype() {
        DType::F16 => half::f16::MIN.to_f64(),
        DType::BF16 => half::bf16::MIN.to_f64(),
        _ => f32::MIN as f64,
    };
    let mut bias = ((mask.ones_like()? - mask)? * lowest)?.reshape((b, 1, 1, l))?;
    if causal {
        let future: Vec<f32> = (0..l)
            .flat_map(|i| (0..l).map(move |j| if j > i { 1.0 } else { 0.0 }))
            .collect();
        let future = (Tensor::from_vec(future, (1, 1, l, l), qkv.device())?
            .to_dtype(mask.dtype())?
            * lowest)?;
        // two lowest values would overflow to -inf: take the smaller, not the sum
        bias = bias.broadcast_minimum(&future)?;
    }
    let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&bias)?)?;
    probs
        .matmul(&v)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, l, hidden))
}
