//! Padded batches of sequences packed to their real tokens, and spread back.

use candle_core::Tensor;

/// Where the real tokens of a padded `[B, L]` batch are: packed row `t` is padded row `rows[t]`;
/// padded row `r` reads packed row `from[r]`, or the zero row `T` when it is padding.
pub struct Packing {
    /// `[T]` padded row of each real token.
    pub rows: Tensor,
    /// `[T]` each real token's position in its sequence.
    pub positions: Tensor,
    /// `[B·L]` packed row of each padded row (`T`: padding).
    from: Tensor,
}

impl Packing {
    /// `mask`: the `[B, L]` 0/1 mask, flattened; `l`: the padded length.
    pub fn new(mask: &[u32], l: usize, device: &candle_core::Device) -> candle_core::Result<Self> {
        let rows: Vec<u32> = (0..mask.len() as u32)
            .filter(|&r| mask[r as usize] != 0)
            .collect();
        let mut from = vec![rows.len() as u32; mask.len()];
        for (t, &r) in rows.iter().enumerate() {
            from[r as usize] = t as u32;
        }
        let positions: Vec<u32> = rows.iter().map(|&r| r % l as u32).collect();
        Ok(Self {
            positions: Tensor::from_vec(positions, rows.len(), device)?,
            rows: Tensor::from_slice(&rows, rows.len(), device)?,
            from: Tensor::from_vec(from, mask.len(), device)?,
        })
    }

    /// `[T, D]` → `[B·L, D]`, zeros at padding.
    pub fn spread(&self, packed: &Tensor) -> candle_core::Result<Tensor> {
        let zero = Tensor::zeros((1, packed.dim(1)?), packed.dtype(), packed.device())?;
        Tensor::cat(&[packed, &zero], 0)?.index_select(&self.from, 0)
    }
}
