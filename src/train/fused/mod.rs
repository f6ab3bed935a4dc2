//! The CPU training step written out: both heads' forward passes, the loss and its gradient,
//! both backward passes and AdamW, on plain f32 buffers.
//!
//! candle's autograd spent most of an epoch outside arithmetic: every op allocates and zeroes a
//! fresh tensor and wakes the thread pool, and Linear's backward also computes the gradient of
//! the input features, which nothing trains (a fifth of the multiply-adds). Here each step is
//! GEMMs (the same `gemm` kernels candle calls) plus one element-wise pass per layer, into
//! buffers reused every step. Parameters live here while an epoch runs and are copied into the
//! candle heads (`write_back`) for validation and checkpoints. The arithmetic is candle's:
//! the tests hold loss and every gradient equal to autograd's, for every loss, direction and head
//! shape.

mod dense;
mod gemm;
mod loss_grad;

use candle_core::{Tensor, Var};
use candle_nn::ParamsAdamW;

use self::{
    dense::{DenseLayer, DenseMlp},
    loss_grad::{Batch, LossGrads},
};
use super::{adamw::AdamWState, Direction, Loss, TrainConfig};
use crate::{heads::Mlp, rng::Rng};

pub struct FusedTrainer {
    image: DenseMlp,
    text: DenseMlp,
    /// InfoNCE's learnable log logit-scale (trained only under that loss).
    log_scale: f32,
    loss: Loss,
    direction: Direction,
    margin: f32,
    opt: AdamWState,
    grads: LossGrads,
}

impl FusedTrainer {
    pub fn new(
        image: &Mlp,
        text: &Mlp,
        log_scale: &Var,
        cfg: &TrainConfig,
        params: ParamsAdamW,
    ) -> candle_core::Result<Self> {
        let image = dense(image)?;
        let text = dense(text)?;
        let mut sizes: Vec<usize> = parameter_sizes(&image)
            .chain(parameter_sizes(&text))
            .collect();
        if cfg.loss == Loss::Infonce {
            sizes.push(1);
        }
        Ok(Self {
            log_scale: log_scale.as_tensor().flatten_all()?.to_vec1::<f32>()?[0],
            loss: cfg.loss,
            direction: cfg.direction,
            margin: cfg.margin(),
            opt: AdamWState::new(sizes.into_iter(), params),
            grads: LossGrads::default(),
            image,
            text,
        })
    }

    pub fn set_learning_rate(&mut self, lr: f64) {
        self.opt.params.lr = lr;
    }

    /// One training step on the pairs (`image_rows[i]` of `images`, `text_rows[i]` of
    /// `texts`); `same[i * b + j]` says pairs i and j are no negatives of each other. Returns
    /// the batch loss.
    pub fn step(
        &mut self,
        (images, texts): (&Tensor, &Tensor),
        (image_rows, text_rows): (&[u32], &[u32]),
        same: &[bool],
        rng: &mut Rng,
        max_norm: f64,
    ) -> candle_core::Result<f32> {
        let loss = self.loss_and_grads((images, texts), (image_rows, text_rows), same, rng)?;
        let mut params: Vec<&mut [f32]> = Vec::new();
        let mut grads: Vec<Option<&[f32]>> = Vec::new();
        for head in [&mut self.image, &mut self.text] {
            for (layer, g) in head.layers.iter_mut().zip(&head.grads) {
                params.push(&mut layer.weight);
                grads.push(Some(&g.weight));
                params.push(&mut layer.bias);
                grads.push(Some(&g.bias));
                if let Some(slope) = layer.slope.as_mut() {
                    params.push(std::slice::from_mut(slope));
                    grads.push(Some(std::slice::from_ref(&g.slope)));
                }
            }
        }
        if self.loss == Loss::Infonce {
            params.push(std::slice::from_mut(&mut self.log_scale));
            grads.push(Some(std::slice::from_ref(&self.grads.log_scale)));
        }
        self.opt.update(&mut params, &grads, max_norm);
        Ok(loss)
    }

    /// Forward, loss and backward; leaves every gradient in place. Draws dropout masks and
    /// triplet negatives from `rng` in the order candle's path does.
    fn loss_and_grads(
        &mut self,
        (images, texts): (&Tensor, &Tensor),
        (image_rows, text_rows): (&[u32], &[u32]),
        same: &[bool],
        rng: &mut Rng,
    ) -> candle_core::Result<f32> {
        let rows = image_rows.len();
        if text_rows.len() != rows || same.len() != rows * rows {
            candle_core::bail!(
                "{rows} image rows, {} text rows, {} negative flags",
                text_rows.len(),
                same.len()
            )
        }
        gather_rows(images, image_rows, self.image.input_buffer(rows))?;
        gather_rows(texts, text_rows, self.text.input_buffer(rows))?;
        self.image.forward(rng);
        self.text.forward(rng);
        let dims = self.image.output_dims();
        self.grads.compute(
            self.loss,
            &Batch {
                images: &self.image.embedding,
                texts: &self.text.embedding,
                rows,
                dims,
                same,
            },
            self.direction,
            self.margin,
            self.log_scale,
            rng,
        );
        self.image.backward(&self.grads.images);
        self.text.backward(&self.grads.texts);
        Ok(self.grads.loss)
    }

    /// Copy the trained parameters into candle's heads (and the InfoNCE scale).
    pub fn write_back(&self, image: &Mlp, text: &Mlp, log_scale: &Var) -> candle_core::Result<()> {
        for (dense, mlp) in [(&self.image, image), (&self.text, text)] {
            for (layer, (weight, bias, slope)) in dense.layers.iter().zip(mlp.layers()) {
                set(weight, &layer.weight)?;
                set(bias, &layer.bias)?;
                if let (Some(var), Some(s)) = (slope, layer.slope) {
                    set(var, &[s])?;
                }
            }
        }
        set(log_scale, &[self.log_scale])
    }
}

fn set(var: &Var, values: &[f32]) -> candle_core::Result<()> {
    var.set(&Tensor::from_slice(values, var.shape(), var.device())?)
}

fn to_vec(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// A copy of a candle head's parameters as plain buffers.
fn dense(mlp: &Mlp) -> candle_core::Result<DenseMlp> {
    let layers = mlp
        .layers()
        .map(|(weight, bias, slope)| {
            let (outputs, inputs) = weight.as_tensor().dims2()?;
            Ok(DenseLayer {
                inputs,
                outputs,
                weight: to_vec(weight.as_tensor())?,
                bias: to_vec(bias.as_tensor())?,
                slope: slope
                    .map(|s| to_vec(s.as_tensor()).map(|v| v[0]))
                    .transpose()?,
            })
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let norm = mlp
        .input_norm()
        .map(|(mean, inv_std)| Ok::<_, candle_core::Error>((to_vec(mean)?, to_vec(inv_std)?)))
        .transpose()?;
    Ok(DenseMlp::new(
        layers,
        norm,
        mlp.config.dropout,
        mlp.config.normalize,
        mlp.config.residual,
    ))
}

/// Sizes of a head's parameters in the order `Mlp::vars` lists them.
fn parameter_sizes(head: &DenseMlp) -> impl Iterator<Item = usize> + '_ {
    head.layers.iter().flat_map(|l| {
        [l.weight.len(), l.bias.len()]
            .into_iter()
            .chain(l.slope.map(|_| 1))
    })
}

/// Copy rows `rows` of a `[n, d]` f32 CPU tensor into `out` (`rows.len() × d`), reading
/// candle's storage in place (no `index_select` tensor per batch).
fn gather_rows(features: &Tensor, rows: &[u32], out: &mut [f32]) -> candle_core::Result<()> {
    let (n, d) = features.dims2()?;
    if out.len() != rows.len() * d {
        candle_core::bail!(
            "gather into {} values, want {} rows of {d}",
            out.len(),
            rows.len()
        )
    }
    let (storage, layout) = features.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("the fused trainer reads CPU features only")
    };
    let Some((start, _)) = layout.contiguous_offsets() else {
        candle_core::bail!("features are not contiguous")
    };
    let data = &cpu.as_slice::<f32>()?[start..start + n * d];
    for (dst, &r) in out.chunks_exact_mut(d).zip(rows) {
        let r = r as usize;
        if r >= n {
            candle_core::bail!("row {r} of {n} features")
        }
        dst.copy_from_slice(&data[r * d..(r + 1) * d]);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
