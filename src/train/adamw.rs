//! AdamW with global-norm gradient clipping, one pass over each parameter on the CPU.
//!
//! candle-nn's AdamW spends ~14 tensor operations per parameter per step (each a fresh
//! allocation and a parallel pass), and clipping added a norm and a rescale per gradient; perf
//! put candle's element-wise kernels and its thread pool's waits at half the training time. Here
//! gradients are read once for the norm and once for the update, moments live in plain vectors,
//! and the parameter is written back once. On other devices candle-nn's AdamW runs (the
//! arithmetic is the same; `tests` below hold them equal).

use candle_core::{backprop::GradStore, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rayon::prelude::*;

pub enum TrainOptimizer {
    Fused(FusedAdamW),
    Candle { opt: AdamW, vars: Vec<Var> },
}

impl TrainOptimizer {
    pub fn new(vars: Vec<Var>, params: ParamsAdamW) -> candle_core::Result<Self> {
        if vars.iter().all(|v| crate::device::cpu_kernels(v.device())) {
            Ok(Self::Fused(FusedAdamW::new(vars, params)?))
        } else {
            Ok(Self::Candle {
                opt: AdamW::new(vars.clone(), params)?,
                vars,
            })
        }
    }

    /// One update; gradients are first scaled together so their global L2 norm is at most
    /// `max_norm` (no clipping when `max_norm <= 0`).
    pub fn step(&mut self, grads: &mut GradStore, max_norm: f64) -> candle_core::Result<()> {
        match self {
            Self::Fused(opt) => opt.step(grads, max_norm),
            Self::Candle { opt, vars } => {
                clip_gradients(grads, vars, max_norm)?;
                opt.step(grads)
            }
        }
    }

    pub fn set_learning_rate(&mut self, lr: f64) {
        match self {
            Self::Fused(opt) => opt.state.params.lr = lr,
            Self::Candle { opt, .. } => opt.set_learning_rate(lr),
        }
    }
}

pub struct FusedAdamW {
    vars: Vec<Var>,
    state: AdamWState,
}

impl FusedAdamW {
    pub fn new(vars: Vec<Var>, params: ParamsAdamW) -> candle_core::Result<Self> {
        Ok(Self {
            state: AdamWState::new(vars.iter().map(|v| v.elem_count()), params),
            vars,
        })
    }

    pub fn step(&mut self, grads: &GradStore, max_norm: f64) -> candle_core::Result<()> {
        let g: Vec<Option<Vec<f32>>> = self
            .vars
            .iter()
            .map(|v| {
                grads
                    .get(v.as_tensor())
                    .map(|g| g.flatten_all()?.to_vec1::<f32>())
                    .transpose()
            })
            .collect::<candle_core::Result<_>>()?;
        let mut theta: Vec<Vec<f32>> = self
            .vars
            .iter()
            .map(|v| v.flatten_all()?.to_vec1::<f32>())
            .collect::<candle_core::Result<_>>()?;
        let mut params: Vec<&mut [f32]> = theta.iter_mut().map(|t| t.as_mut_slice()).collect();
        let grads: Vec<Option<&[f32]>> = g.iter().map(|g| g.as_deref()).collect();
        self.state.update(&mut params, &grads, max_norm);
        for ((var, theta), g) in self.vars.iter().zip(theta).zip(&g) {
            if g.is_some() {
                var.set(&Tensor::from_vec(theta, var.shape(), var.device())?)?;
            }
        }
        Ok(())
    }
}

/// Elements per parallel task of the optimizer (a 1024 × 1280 weight is 80 of them).
const CHUNK: usize = 1 << 14;

/// AdamW's moments and step count over plain parameter slices: one pass over the gradients for
/// their global norm, one pass per parameter for the update.
pub struct AdamWState {
    first: Vec<Vec<f32>>,
    second: Vec<Vec<f32>>,
    pub params: ParamsAdamW,
    step_t: i32,
}

impl AdamWState {
    pub fn new(sizes: impl Iterator<Item = usize>, params: ParamsAdamW) -> Self {
        let (first, second) = sizes.map(|n| (vec![0f32; n], vec![0f32; n])).unzip();
        Self {
            first,
            second,
            params,
            step_t: 0,
        }
    }

    /// One update of `params[i]` by `grads[i]` (a parameter without a gradient is left alone),
    /// the gradients first scaled together so their global L2 norm is at most `max_norm` (no
    /// clipping when `max_norm <= 0`).
    pub fn update(&mut self, params: &mut [&mut [f32]], grads: &[Option<&[f32]>], max_norm: f64) {
        assert_eq!(params.len(), self.first.len(), "one slice per parameter");
        assert_eq!(grads.len(), self.first.len(), "one gradient per parameter");
        // partial sums per chunk in parallel, added in a fixed order: the same norm every run
        let partial: Vec<f64> = grads
            .iter()
            .flatten()
            .flat_map(|g| g.chunks(CHUNK))
            .collect::<Vec<_>>()
            .par_iter()
            .map(|c| c.iter().map(|&x| x as f64 * x as f64).sum::<f64>())
            .collect();
        let norm = partial.iter().sum::<f64>().sqrt();
        let clip = if max_norm > 0.0 && norm > max_norm {
            (max_norm / (norm + 1e-6)) as f32
        } else {
            1.0
        };
        self.step_t += 1;
        let p = &self.params;
        let (b1, b2) = (p.beta1 as f32, p.beta2 as f32);
        let scale_m = (1.0 / (1.0 - p.beta1.powi(self.step_t))) as f32;
        let scale_v = (1.0 / (1.0 - p.beta2.powi(self.step_t))) as f32;
        let (lr, eps) = (p.lr as f32, p.eps as f32);
        let decay = (1.0 - p.lr * p.weight_decay) as f32;
        for (i, theta) in params.iter_mut().enumerate() {
            let Some(g) = grads[i] else { continue };
            assert_eq!(theta.len(), g.len(), "gradient shaped as its parameter");
            let (m, v) = (&mut self.first[i], &mut self.second[i]);
            // element-wise, so chunks on rayon's threads give the same result as one loop
            theta
                .par_chunks_mut(CHUNK)
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .zip(g.par_chunks(CHUNK))
                .for_each(|(((theta, m), v), g)| {
                    for (((t, m), v), &g) in theta.iter_mut().zip(m).zip(v).zip(g) {
                        let g = g * clip;
                        *m = b1 * *m + (1.0 - b1) * g;
                        *v = b2 * *v + (1.0 - b2) * g * g;
                        *t = *t * decay - lr * (*m * scale_m) / ((*v * scale_v).sqrt() + eps);
                    }
                });
        }
    }
}

/// Scale all gradients down together when their global L2 norm exceeds `max_norm`.
fn clip_gradients(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> candle_core::Result<()> {
    if max_norm <= 0.0 {
        return Ok(());
    }
    // everything stays on the device: one sum per parameter, one norm, one scale factor
    // (min(1, max_norm / norm)); no host round trip per parameter
    let sums = vars
        .iter()
        .filter_map(|v| grads.get(v.as_tensor()))
        .map(|g| g.sqr()?.sum_all())
        .collect::<candle_core::Result<Vec<_>>>()?;
    if sums.is_empty() {
        return Ok(());
    }
    let norm = Tensor::stack(&sums, 0)?.sum_all()?.sqrt()?;
    let factor = ((norm + 1e-6)?.recip()? * max_norm)?.clamp(0f32, 1f32)?;
    for v in vars {
        if let Some(g) = grads.remove(v.as_tensor()) {
            grads.insert(v.as_tensor(), g.broadcast_mul(&factor)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};
    use candle_nn::ParamsAdamW;

    use super::*;

    /// A quadratic whose gradient is large enough to be clipped at first, then not.
    fn run(fused: bool, steps: usize) -> Vec<Vec<f32>> {
        let dev = Device::Cpu;
        let a =
            Var::from_tensor(&Tensor::new(&[[1.0f32, -2.0], [3.0, 0.5]], &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::new(&[0.25f32, -4.0, 8.0], &dev).unwrap()).unwrap();
        let params = ParamsAdamW {
            lr: 0.05,
            weight_decay: 0.01,
            ..Default::default()
        };
        let vars = vec![a.clone(), b.clone()];
        let mut opt = if fused {
            TrainOptimizer::Fused(FusedAdamW::new(vars, params).unwrap())
        } else {
            TrainOptimizer::Candle {
                opt: AdamW::new(vars.clone(), params).unwrap(),
                vars,
            }
        };
        for step in 0..steps {
            let loss = ((a.as_tensor().sqr().unwrap().sum_all().unwrap() * 3.0).unwrap()
                + b.as_tensor().sqr().unwrap().sum_all().unwrap())
            .unwrap();
            let mut grads = loss.backward().unwrap();
            if step == 5 {
                opt.set_learning_rate(0.01);
            }
            opt.step(&mut grads, 4.0).unwrap();
        }
        vec![
            a.as_tensor().flatten_all().unwrap().to_vec1().unwrap(),
            b.as_tensor().to_vec1().unwrap(),
        ]
    }

    #[test]
    fn fused_steps_match_candle_nn_adamw_with_clipping() {
        let (fused, candle) = (run(true, 12), run(false, 12));
        for (f, c) in fused.iter().flatten().zip(candle.iter().flatten()) {
            assert!(
                (f - c).abs() <= 1e-5 * (1.0 + c.abs()),
                "{fused:?} vs {candle:?}"
            );
        }
        // and training moved the parameters
        assert!((fused[0][0] - 1.0).abs() > 0.1);
    }
}
