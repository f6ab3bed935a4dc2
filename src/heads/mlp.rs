//! The projection MLP: Linear → PReLU → Dropout, repeated, then a final Linear, optionally with
//! input standardisation and L2-normalised output. The original study's heads are two instances
//! (image: one hidden layer, dropout 0.5; text: two hidden layers, dropout 0.1).

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var, D};
use serde::{Deserialize, Serialize};

use crate::{encode::l2_normalize, rng::Rng};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    pub input: usize,
    pub hidden: Vec<usize>,
    pub output: usize,
    pub dropout: f32,
    /// Standardise inputs with the training set's per-dimension mean and std (a frozen input
    /// batch-norm: identical at train and test time, and reproducible).
    #[serde(default)]
    pub input_norm: bool,
    /// L2-normalise outputs (cosine losses and scoring).
    pub normalize: bool,
    /// Add the input to the output (before normalising), with the last layer initialised at
    /// zero: the head starts as the identity, so a head on a CLIP-family model's features starts
    /// exactly at its zero-shot space and training adapts from there (CLIP-Adapter's setup).
    /// Needs `output == input` and no `input_norm`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub residual: bool,
}

impl MlpConfig {
    /// The original study's image head: Linear → PReLU → Linear, dropout 0.5.
    pub fn original_image(input: usize, output: usize) -> Self {
        Self {
            input,
            hidden: vec![1024],
            output,
            dropout: 0.5,
            input_norm: false,
            normalize: false,
            residual: false,
        }
    }

    /// The original study's text head: Linear → PReLU → Linear → PReLU → Linear, dropout 0.1.
    pub fn original_text(input: usize, output: usize) -> Self {
        Self {
            input,
            hidden: vec![1024, 1024],
            output,
            dropout: 0.1,
            input_norm: false,
            normalize: false,
            residual: false,
        }
    }
}

struct Layer {
    weight: Var,
    bias: Var,
    /// PReLU slope, for hidden layers.
    slope: Option<Var>,
}

pub struct Mlp {
    pub config: MlpConfig,
    layers: Vec<Layer>,
    /// (mean, 1/std) of the inputs when `input_norm`.
    norm: Option<(Tensor, Tensor)>,
}

impl Mlp {
    /// Fresh weights: PyTorch's default Linear init (uniform ±1/√fan_in), PReLU slope 0.25.
    pub fn new(config: MlpConfig, rng: &mut Rng, device: &Device) -> candle_core::Result<Self> {
        if config.residual && (config.output != config.input || config.input_norm) {
            candle_core::bail!(
                "a residual head maps {} features to {} with input_norm {}: it needs output = input and no input_norm",
                config.input,
                config.output,
                config.input_norm
            )
        }
        let mut dims = vec![config.input];
        dims.extend(&config.hidden);
        dims.push(config.output);
        let mut layers = Vec::new();
        for (i, pair) in dims.windows(2).enumerate() {
            let (inp, out) = (pair[0], pair[1]);
            let bound = 1.0 / (inp as f32).sqrt();
            let uniform = |rng: &mut Rng, n: usize| {
                (0..n)
                    .map(|_| rng.range(-bound, bound))
                    .collect::<Vec<f32>>()
            };
            let weight = Var::from_tensor(&Tensor::from_vec(
                uniform(rng, out * inp),
                (out, inp),
                device,
            )?)?;
            let bias = Var::from_tensor(&Tensor::from_vec(uniform(rng, out), out, device)?)?;
            let hidden = i + 2 < dims.len();
            if !hidden && config.residual {
                // the identity at the start: the residual branch adds nothing yet
                weight
                    .as_tensor()
                    .zeros_like()
                    .and_then(|z| weight.set(&z))?;
                bias.as_tensor().zeros_like().and_then(|z| bias.set(&z))?;
            }
            let slope = if hidden {
                Some(Var::from_tensor(&Tensor::new(&[0.25f32], device)?)?)
            } else {
                None
            };
            layers.push(Layer {
                weight,
                bias,
                slope,
            });
        }
        Ok(Self {
            config,
            layers,
            norm: None,
        })
    }

    /// Fix the input statistics from training features `[n, input]`.
    pub fn fit_input_norm(&mut self, features: &Tensor) -> candle_core::Result<()> {
        if self.config.input_norm {
            let mean = features.mean_keepdim(0)?;
            let std = features
                .broadcast_sub(&mean)?
                .sqr()?
                .mean_keepdim(0)?
                .sqrt()?
                .clamp(1e-6, f64::INFINITY)?;
            self.norm = Some((mean, std.recip()?));
        }
        Ok(())
    }

    pub fn vars(&self) -> Vec<Var> {
        self.layers
            .iter()
            .flat_map(|l| {
                [
                    Some(l.weight.clone()),
                    Some(l.bias.clone()),
                    l.slope.clone(),
                ]
            })
            .flatten()
            .collect()
    }

    /// Each layer's weight `[out, in]`, bias and (hidden layers) PReLU slope, input to output.
    pub fn layers(&self) -> impl Iterator<Item = (&Var, &Var, Option<&Var>)> {
        self.layers
            .iter()
            .map(|l| (&l.weight, &l.bias, l.slope.as_ref()))
    }

    /// The frozen input standardisation (mean, 1/std), when the head has one.
    pub fn input_norm(&self) -> Option<(&Tensor, &Tensor)> {
        self.norm.as_ref().map(|(m, s)| (m, s))
    }

    /// `dropout`: the RNG for dropout masks while training; `None` at inference.
    pub fn forward(
        &self,
        x: &Tensor,
        mut dropout: Option<&mut Rng>,
    ) -> candle_core::Result<Tensor> {
        let mut h = match &self.norm {
            Some((mean, inv_std)) => x.broadcast_sub(mean)?.broadcast_mul(inv_std)?,
            None => x.clone(),
        };
        for layer in &self.layers {
            h = h
                .matmul(&layer.weight.as_tensor().t()?)?
                .broadcast_add(layer.bias.as_tensor())?;
            if let Some(slope) = &layer.slope {
                // PReLU: max(0, x) + a·min(0, x)
                h = (h.relu()? + h.minimum(0f32)?.broadcast_mul(slope.as_tensor())?)?;
                if let (Some(rng), p) = (dropout.as_deref_mut(), self.config.dropout) {
                    if p > 0.0 {
                        h = apply_dropout(&h, p, rng)?;
                    }
                }
            }
        }
        if self.config.residual {
            h = (h + x)?;
        }
        if self.config.normalize {
            l2_normalize(&h)
        } else {
            Ok(h)
        }
    }

    pub fn tensors(&self, prefix: &str) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, l) in self.layers.iter().enumerate() {
            out.insert(format!("{prefix}.{i}.weight"), l.weight.as_tensor().clone());
            out.insert(format!("{prefix}.{i}.bias"), l.bias.as_tensor().clone());
            if let Some(s) = &l.slope {
                out.insert(format!("{prefix}.{i}.prelu"), s.as_tensor().clone());
            }
        }
        if let Some((mean, inv_std)) = &self.norm {
            out.insert(format!("{prefix}.norm.mean"), mean.clone());
            out.insert(format!("{prefix}.norm.inv_std"), inv_std.clone());
        }
        out
    }

    pub fn from_tensors(
        config: MlpConfig,
        tensors: &HashMap<String, Tensor>,
        prefix: &str,
    ) -> candle_core::Result<Self> {
        let get = |name: String| {
            tensors
                .get(&name)
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg(format!("heads file lacks {name}")))
        };
        let depth = config.hidden.len() + 1;
        let mut layers = Vec::new();
        let mut expected_in = config.input;
        for i in 0..depth {
            let weight = get(format!("{prefix}.{i}.weight"))?;
            let out = if i + 1 < depth {
                config.hidden[i]
            } else {
                config.output
            };
            if weight.dims() != [out, expected_in] {
                candle_core::bail!(
                    "{prefix}.{i}.weight is {:?}, config says [{out}, {expected_in}]",
                    weight.dims()
                )
            }
            expected_in = out;
            let slope = if i + 1 < depth {
                Some(Var::from_tensor(&get(format!("{prefix}.{i}.prelu"))?)?)
            } else {
                None
            };
            layers.push(Layer {
                weight: Var::from_tensor(&weight)?,
                bias: Var::from_tensor(&get(format!("{prefix}.{i}.bias"))?)?,
                slope,
            });
        }
        let norm = if config.input_norm {
            Some((
                get(format!("{prefix}.norm.mean"))?,
                get(format!("{prefix}.norm.inv_std"))?,
            ))
        } else {
            None
        };
        Ok(Self {
            config,
            layers,
            norm,
        })
    }
}

/// Inverted dropout with a mask from our own RNG (candle's CPU generator cannot be seeded).
fn apply_dropout(x: &Tensor, p: f32, rng: &mut Rng) -> candle_core::Result<Tensor> {
    let keep = 1.0 - p;
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| if rng.unit() < keep { 1.0 / keep } else { 0.0 })
        .collect();
    x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?)
}

/// Mean pairwise cosine similarity of rows (1.0 means every embedding points the same way: the
/// collapse the original triplet recipe falls into) and the total variance of the rows.
pub fn spread(x: &Tensor) -> candle_core::Result<(f32, f32)> {
    let n = x.dim(0)? as f32;
    if n < 2.0 {
        return Ok((0.0, 0.0));
    }
    let u = l2_normalize(x)?;
    let s = u.sum(0)?.sqr()?.sum_all()?.to_scalar::<f32>()?;
    let mean_cos = (s - n) / (n * (n - 1.0));
    let var = x
        .broadcast_sub(&x.mean_keepdim(0)?)?
        .sqr()?
        .sum(D::Minus1)?
        .mean_all()?
        .to_scalar::<f32>()?;
    Ok((mean_cos, var))
}
