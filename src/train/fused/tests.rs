//! The fused step against candle's autograd on the same heads, batch and RNG stream.

use candle_core::{Device, Tensor, Var};
use candle_nn::ParamsAdamW;

use super::*;
use crate::{
    heads::MlpConfig,
    train::{adamw::TrainOptimizer, Architecture},
};

const IMAGE_DIMS: usize = 24;
const TEXT_DIMS: usize = 16;

struct Case {
    loss: Loss,
    direction: Direction,
    /// hidden widths of the image and text heads
    hidden: (Vec<usize>, Vec<usize>),
    dropout: f32,
    input_norm: bool,
    /// Residual heads (output = input; the features are cut to one width for both sides).
    residual: bool,
}

fn config(case: &Case) -> TrainConfig {
    TrainConfig {
        loss: case.loss,
        direction: case.direction,
        architecture: Architecture::Mlp,
        depth: 0,
        width: 0,
        out_dim: 8,
        dropout: case.dropout,
        input_norm: case.input_norm,
        epochs: 1,
        batch_size: 12,
        lr: 0.01,
        lr_decay: 1.0,
        decay_every: 0,
        weight_decay: 0.01,
        grad_clip: 0.5,
        margin: None,
        patience: 1,
        seed: 0,
        autograd: false,
    }
}

fn heads(case: &Case, cfg: &TrainConfig, features: (&Tensor, &Tensor)) -> (Mlp, Mlp, Var) {
    let dev = Device::Cpu;
    let mut rng = Rng::new(11);
    let mlp = |input, hidden: &Vec<usize>, rng: &mut Rng| {
        let head = Mlp::new(
            MlpConfig {
                input,
                hidden: hidden.clone(),
                output: if case.residual { input } else { cfg.out_dim },
                dropout: case.dropout,
                input_norm: case.input_norm,
                normalize: cfg.normalized(),
                residual: case.residual,
            },
            rng,
            &dev,
        )
        .unwrap();
        if case.residual {
            // a residual head starts with its last layer at zero, where the layers below get
            // no gradient: start elsewhere so every gradient is checked
            let (w, b, _) = head.layers().last().unwrap();
            for v in [w, b] {
                let t = v.as_tensor();
                let values: Vec<f32> = (0..t.elem_count()).map(|_| 0.3 * rng.normal()).collect();
                v.set(&Tensor::from_vec(values, t.shape(), &dev).unwrap())
                    .unwrap();
            }
        }
        head
    };
    let image_dims = features.0.dim(1).unwrap();
    let mut image = mlp(image_dims, &case.hidden.0, &mut rng);
    let mut text = mlp(TEXT_DIMS, &case.hidden.1, &mut rng);
    image.fit_input_norm(features.0).unwrap();
    text.fit_input_norm(features.1).unwrap();
    let log_scale = Var::from_tensor(&Tensor::new(&[(1.0f32 / 0.07).ln()], &dev).unwrap()).unwrap();
    (image, text, log_scale)
}

/// 10 images, 30 captions, and a batch of (image row, caption row) pairs: with `repeats`, some
/// pairs share an image (so they are not each other's negatives).
///
/// Without dropout, two pairs of one image have identical image embeddings, so a caption's
/// hardest negative can be a tie; candle's `max` then sends the gradient to every tied entry,
/// PyTorch's (and ours) to one. Batches with repeats are therefore only used with dropout.
fn data(repeats: bool) -> (Tensor, Tensor, Vec<u32>, Vec<u32>) {
    let mut rng = Rng::new(5);
    let images: Vec<f32> = (0..10 * IMAGE_DIMS)
        .map(|_| rng.normal().max(0.0) + 0.1)
        .collect();
    let texts: Vec<f32> = (0..30 * TEXT_DIMS).map(|_| rng.normal()).collect();
    let text_rows: Vec<u32> = if repeats {
        vec![0, 1, 5, 6, 7, 10, 11, 20, 21, 22, 28, 3]
    } else {
        vec![0, 5, 7, 10, 13, 20, 22, 24, 27, 16]
    };
    let image_rows: Vec<u32> = text_rows.iter().map(|t| t / 3).collect();
    (
        Tensor::from_vec(images, (10, IMAGE_DIMS), &Device::Cpu).unwrap(),
        Tensor::from_vec(texts, (30, TEXT_DIMS), &Device::Cpu).unwrap(),
        image_rows,
        text_rows,
    )
}

/// candle's loss for one batch, as `train --autograd` computes it.
fn candle_loss(
    cfg: &TrainConfig,
    heads: (&Mlp, &Mlp, &Var),
    features: (&Tensor, &Tensor),
    (image_rows, text_rows): (&[u32], &[u32]),
    rng: &mut Rng,
) -> Tensor {
    crate::train::autograd_loss(
        cfg,
        heads,
        features,
        (image_rows, text_rows),
        &not_negatives(image_rows, text_rows),
        rng,
    )
    .unwrap()
}

/// Pairs sharing an image, or a caption text: captions 5 and 20 (images 1 and 6) are made one
/// text here.
fn not_negatives(image_rows: &[u32], text_rows: &[u32]) -> Vec<bool> {
    let mut keys: Vec<u32> = (0..30).collect();
    keys[20] = keys[5];
    crate::train::negatives::not_negatives(image_rows, text_rows, &keys)
}

fn close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * scale + 1e-6,
            "{what}[{i}]: fused {g} vs candle {w} (largest |candle| {scale})"
        );
    }
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for loss in [Loss::Triplet, Loss::Hardest, Loss::Infonce] {
        for direction in [Direction::I2t, Direction::T2i, Direction::Joint] {
            // the original study's shapes (one and two hidden layers, dropout), a single Linear,
            // and standardised inputs without dropout
            out.push(Case {
                loss,
                direction,
                hidden: (vec![32], vec![32, 20]),
                dropout: 0.3,
                input_norm: false,
                residual: false,
            });
            out.push(Case {
                loss,
                direction,
                hidden: (vec![], vec![]),
                dropout: 0.0,
                input_norm: false,
                residual: false,
            });
            out.push(Case {
                loss,
                direction,
                hidden: (vec![20], vec![20]),
                dropout: 0.0,
                input_norm: true,
                residual: false,
            });
            // the adapter on a CLIP-family model's features
            out.push(Case {
                loss,
                direction,
                hidden: (vec![12], vec![12]),
                dropout: 0.3,
                input_norm: false,
                residual: true,
            });
        }
    }
    out
}

#[test]
fn loss_and_every_gradient_match_candle_autograd() {
    for case in cases() {
        let (images, texts, image_rows, text_rows) = data(case.dropout > 0.0);
        let images = if case.residual {
            images
                .narrow(1, 0, TEXT_DIMS)
                .unwrap()
                .contiguous()
                .unwrap()
        } else {
            images
        };
        let cfg = config(&case);
        let what = format!(
            "{:?} {:?} hidden {:?} dropout {} norm {} residual {}",
            case.loss, case.direction, case.hidden, case.dropout, case.input_norm, case.residual
        );
        let (image, text, log_scale) = heads(&case, &cfg, (&images, &texts));
        let loss = candle_loss(
            &cfg,
            (&image, &text, &log_scale),
            (&images, &texts),
            (&image_rows, &text_rows),
            &mut Rng::new(99),
        );
        let want_loss = loss.to_scalar::<f32>().unwrap();
        assert!(
            want_loss > 0.0,
            "{what}: a batch with nothing to learn tests nothing"
        );
        let grads = loss.backward().unwrap();

        let mut fused =
            FusedTrainer::new(&image, &text, &log_scale, &cfg, ParamsAdamW::default()).unwrap();
        let got_loss = fused
            .loss_and_grads(
                (&images, &texts),
                (&image_rows, &text_rows),
                &not_negatives(&image_rows, &text_rows),
                &mut Rng::new(99),
            )
            .unwrap();
        close(&format!("{what}: loss"), &[got_loss], &[want_loss]);
        for (side, mlp, dense) in [
            ("image", &image, &fused.image),
            ("text", &text, &fused.text),
        ] {
            for (i, ((w, b, s), g)) in mlp.layers().zip(&dense.grads).enumerate() {
                let want = |v: &Var| to_vec(grads.get(v.as_tensor()).unwrap()).unwrap();
                close(&format!("{what}: {side}.{i}.weight"), &g.weight, &want(w));
                close(&format!("{what}: {side}.{i}.bias"), &g.bias, &want(b));
                if let Some(s) = s {
                    close(&format!("{what}: {side}.{i}.prelu"), &[g.slope], &want(s));
                }
            }
        }
        if case.loss == Loss::Infonce {
            let want = to_vec(grads.get(log_scale.as_tensor()).unwrap()).unwrap();
            close(
                &format!("{what}: log_scale"),
                &[fused.grads.log_scale],
                &want,
            );
        }
    }
}

#[test]
fn steps_and_write_back_match_candle_with_fused_adamw() {
    let (images, texts, image_rows, text_rows) = data(true);
    for loss in [Loss::Hardest, Loss::Infonce] {
        let case = Case {
            loss,
            direction: Direction::Joint,
            hidden: (vec![32], vec![32, 20]),
            dropout: 0.3,
            input_norm: true,
            residual: false,
        };
        let cfg = config(&case);
        let params = ParamsAdamW {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        };
        // candle: autograd + the optimizer `train` used before
        let (image, text, log_scale) = heads(&case, &cfg, (&images, &texts));
        let mut vars = image.vars();
        vars.extend(text.vars());
        if loss == Loss::Infonce {
            vars.push(log_scale.clone());
        }
        let mut opt = TrainOptimizer::new(vars.clone(), params.clone()).unwrap();
        let mut rng = Rng::new(7);
        // fused, from identical initial heads, written back into them
        let (f_image, f_text, f_scale) = heads(&case, &cfg, (&images, &texts));
        let mut fused = FusedTrainer::new(&f_image, &f_text, &f_scale, &cfg, params).unwrap();
        let mut f_rng = Rng::new(7);
        for step in 0..4 {
            let l = candle_loss(
                &cfg,
                (&image, &text, &log_scale),
                (&images, &texts),
                (&image_rows, &text_rows),
                &mut rng,
            );
            let want = l.to_scalar::<f32>().unwrap();
            opt.step(&mut l.backward().unwrap(), cfg.grad_clip).unwrap();
            let got = fused
                .step(
                    (&images, &texts),
                    (&image_rows, &text_rows),
                    &not_negatives(&image_rows, &text_rows),
                    &mut f_rng,
                    cfg.grad_clip,
                )
                .unwrap();
            close(&format!("{loss:?} step {step} loss"), &[got], &[want]);
        }
        fused.write_back(&f_image, &f_text, &f_scale).unwrap();
        let mut f_vars = f_image.vars();
        f_vars.extend(f_text.vars());
        f_vars.push(f_scale.clone());
        vars.truncate(f_vars.len());
        if loss != Loss::Infonce {
            f_vars.pop();
        }
        for (i, (want, got)) in vars.iter().zip(&f_vars).enumerate() {
            close(
                &format!("{loss:?} parameter {i}"),
                &to_vec(got.as_tensor()).unwrap(),
                &to_vec(want.as_tensor()).unwrap(),
            );
        }
        // and the steps moved the heads
        let initial = heads(&case, &cfg, (&images, &texts)).0;
        let moved = to_vec(initial.vars()[0].as_tensor()).unwrap();
        let trained = to_vec(f_vars[0].as_tensor()).unwrap();
        assert!(moved
            .iter()
            .zip(&trained)
            .any(|(a, b)| (a - b).abs() > 1e-3));
    }
}
