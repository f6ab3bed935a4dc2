//! One projection MLP as plain f32 buffers, with its forward and backward passes written out.
//!
//! Same arithmetic as `heads::Mlp::forward` under candle's autograd (Linear, PReLU, inverted
//! dropout with masks drawn from our RNG in the same order, optional frozen input
//! standardisation, optional residual and L2-normalised output; the residual adds the input,
//! which is not trained, so the backward pass is unchanged), but each layer is one GEMM plus one fused
//! element-wise pass, activations live in buffers reused every step, and the first layer's input
//! gradient (features are not trained) is never computed.

use rayon::prelude::*;

use super::gemm::{matmul, View};
use crate::rng::Rng;

pub struct DenseLayer {
    pub inputs: usize,
    pub outputs: usize,
    /// `[outputs, inputs]`, as candle's Linear (and PyTorch's) store it.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    /// PReLU slope of a hidden layer.
    pub slope: Option<f32>,
}

/// Gradients of one layer's parameters, shaped as the parameters.
pub struct LayerGrads {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub slope: f32,
}

pub struct DenseMlp {
    pub layers: Vec<DenseLayer>,
    pub grads: Vec<LayerGrads>,
    /// (mean, 1/std) of the inputs when the head standardises them.
    norm: Option<(Vec<f32>, Vec<f32>)>,
    dropout: f32,
    normalize: bool,
    /// The input is added to the last layer's output (no input standardisation then).
    residual: bool,
    rows: usize,
    /// `inputs[i]`: what layer `i` read in the last forward pass (`[rows, layer.inputs]`).
    inputs: Vec<Vec<f32>>,
    /// Hidden layers' pre-activations and dropout multipliers (0 or 1/keep).
    pre: Vec<Vec<f32>>,
    masks: Vec<Vec<f32>>,
    /// Last layer's output before normalisation, its row norms, and the embedding itself.
    raw: Vec<f32>,
    norms: Vec<f32>,
    pub embedding: Vec<f32>,
    /// dLoss/d(layer output), reused by the backward pass.
    delta: Vec<f32>,
    delta_below: Vec<f32>,
    /// A row of ones: bias gradients are `onesᵀ · delta`.
    ones: Vec<f32>,
}

/// Elements per parallel task of the element-wise passes.
const CHUNK: usize = 1 << 14;

/// candle's `l2_normalize` clamps row norms here.
const MIN_NORM: f32 = 1e-12;

impl DenseMlp {
    pub fn new(
        layers: Vec<DenseLayer>,
        norm: Option<(Vec<f32>, Vec<f32>)>,
        dropout: f32,
        normalize: bool,
        residual: bool,
    ) -> Self {
        let grads = layers
            .iter()
            .map(|l| LayerGrads {
                weight: vec![0.0; l.weight.len()],
                bias: vec![0.0; l.bias.len()],
                slope: 0.0,
            })
            .collect();
        let depth = layers.len();
        Self {
            layers,
            grads,
            norm,
            dropout,
            normalize,
            residual,
            rows: 0,
            inputs: vec![Vec::new(); depth],
            pre: vec![Vec::new(); depth],
            masks: vec![Vec::new(); depth],
            raw: Vec::new(),
            norms: Vec::new(),
            embedding: Vec::new(),
            delta: Vec::new(),
            delta_below: Vec::new(),
            ones: Vec::new(),
        }
    }

    pub fn input_dims(&self) -> usize {
        self.layers[0].inputs
    }

    pub fn output_dims(&self) -> usize {
        self.layers.last().map_or(0, |l| l.outputs)
    }

    /// The buffer the next forward pass reads: fill `rows × input_dims` features, then call
    /// `forward`.
    pub fn input_buffer(&mut self, rows: usize) -> &mut [f32] {
        self.rows = rows;
        let n = rows * self.input_dims();
        let input = &mut self.inputs[0];
        input.resize(n, 0.0);
        input
    }

    /// Training forward pass over the rows in `input_buffer`; dropout masks come from `rng` in
    /// the order candle's path draws them (layer by layer, row-major). Leaves `embedding`.
    pub fn forward(&mut self, rng: &mut Rng) {
        let rows = self.rows;
        if let Some((mean, inv_std)) = &self.norm {
            for row in self.inputs[0].chunks_exact_mut(mean.len()) {
                for ((x, m), s) in row.iter_mut().zip(mean).zip(inv_std) {
                    *x = (*x - m) * s;
                }
            }
        }
        let keep = 1.0 - self.dropout;
        let depth = self.layers.len();
        for i in 0..depth {
            let layer = &self.layers[i];
            let hidden = i + 1 < depth;
            let mut out = if hidden {
                std::mem::take(&mut self.pre[i])
            } else {
                std::mem::take(&mut self.raw)
            };
            out.clear();
            for _ in 0..rows {
                out.extend_from_slice(&layer.bias);
            }
            matmul(
                &mut out,
                true,
                View::new(&self.inputs[i], rows, layer.inputs),
                View::new(&layer.weight, layer.outputs, layer.inputs).t(),
            );
            if let Some(slope) = layer.slope.filter(|_| hidden) {
                let mask = &mut self.masks[i];
                mask.clear();
                if self.dropout > 0.0 {
                    mask.extend((0..out.len()).map(|_| {
                        if rng.unit() < keep {
                            1.0 / keep
                        } else {
                            0.0
                        }
                    }));
                } else {
                    mask.resize(out.len(), 1.0);
                }
                let next = &mut self.inputs[i + 1];
                next.resize(out.len(), 0.0);
                next.par_chunks_mut(CHUNK)
                    .zip(out.par_chunks(CHUNK))
                    .zip(mask.par_chunks(CHUNK))
                    .for_each(|((next, out), mask)| {
                        for ((h, &z), &m) in next.iter_mut().zip(out).zip(mask) {
                            *h = if z >= 0.0 { z } else { slope * z } * m;
                        }
                    });
                self.pre[i] = out;
            } else {
                self.raw = out;
            }
        }
        if self.residual {
            // inputs[0] is the raw input: a residual head has no standardisation
            for (y, x) in self.raw.iter_mut().zip(&self.inputs[0]) {
                *y += x;
            }
        }
        let dims = self.output_dims();
        self.embedding.clear();
        self.norms.clear();
        if self.normalize {
            for row in self.raw.chunks_exact(dims) {
                let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(MIN_NORM);
                self.norms.push(norm);
                self.embedding.extend(row.iter().map(|x| x / norm));
            }
        } else {
            self.embedding.extend_from_slice(&self.raw);
        }
    }

    /// Backward pass from dLoss/d`embedding`; fills `grads` (overwriting the last step's).
    pub fn backward(&mut self, d_embedding: &[f32]) {
        let rows = self.rows;
        let dims = self.output_dims();
        assert_eq!(
            d_embedding.len(),
            rows * dims,
            "gradient does not fit the embedding"
        );
        let mut delta = std::mem::take(&mut self.delta);
        delta.clear();
        if self.normalize {
            // d(y/|y|) = (g - u (u·g)) / |y|
            for ((g, u), &norm) in d_embedding
                .chunks_exact(dims)
                .zip(self.embedding.chunks_exact(dims))
                .zip(&self.norms)
            {
                let along: f32 = g.iter().zip(u).map(|(g, u)| g * u).sum();
                let along = if norm > MIN_NORM { along } else { 0.0 };
                delta.extend(g.iter().zip(u).map(|(g, u)| (g - u * along) / norm));
            }
        } else {
            delta.extend_from_slice(d_embedding);
        }
        let mut below = std::mem::take(&mut self.delta_below);
        for i in (0..self.layers.len()).rev() {
            let layer = &self.layers[i];
            let grads = &mut self.grads[i];
            matmul(
                &mut grads.weight,
                false,
                View::new(&delta, rows, layer.outputs).t(),
                View::new(&self.inputs[i], rows, layer.inputs),
            );
            // column sums of delta, as a product with a row of ones
            self.ones.resize(rows, 1.0);
            matmul(
                &mut grads.bias,
                false,
                View::new(&self.ones, 1, rows),
                View::new(&delta, rows, layer.outputs),
            );
            if i == 0 {
                break; // features are not trained: no gradient for them
            }
            // through layer i's weights to the hidden activation below, then its dropout and PReLU
            below.clear();
            below.resize(rows * layer.inputs, 0.0);
            matmul(
                &mut below,
                false,
                View::new(&delta, rows, layer.outputs),
                View::new(&layer.weight, layer.outputs, layer.inputs),
            );
            let slope = self.layers[i - 1].slope.unwrap_or(1.0);
            // partial slope gradients per chunk, added in a fixed order (same sum every run)
            let partial: Vec<f32> = below
                .par_chunks_mut(CHUNK)
                .zip(self.pre[i - 1].par_chunks(CHUNK))
                .zip(self.masks[i - 1].par_chunks(CHUNK))
                .map(|((below, pre), mask)| {
                    let mut d_slope = 0.0f32;
                    for ((d, &z), &m) in below.iter_mut().zip(pre).zip(mask) {
                        let da = *d * m;
                        if z >= 0.0 {
                            *d = da;
                        } else {
                            d_slope += da * z;
                            *d = da * slope;
                        }
                    }
                    d_slope
                })
                .collect();
            self.grads[i - 1].slope = partial.iter().sum();
            std::mem::swap(&mut delta, &mut below);
        }
        self.delta = delta;
        self.delta_below = below;
    }
}
