//! EfficientNet-Lite0 (Tan & Le; the "lite" variant: ReLU6, no squeeze-excitation, fixed stem and
//! head), with the key names of `efficientnet_lite_pytorch` (a fork of lukemelas/EfficientNet-PyTorch):
//! `_conv_stem`, `_bn0`, `_blocks.N._{expand,depthwise,project}_conv`, `_conv_head`, `_bn1`, `_fc`.
//! Convolutions use TensorFlow "same" padding, BatchNorm ε = 1e-3.

use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::layers::{global_avg_pool, Activation::Relu6, Conv, ConvSpec, Padding::TfSame};

const BN_EPS: f64 = 1e-3;

/// (repeats, kernel, stride, expand ratio, in, out) per stage, as in efficientnet_lite_builder.py.
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

struct MbConv {
    expand: Option<Conv>,
    depthwise: Conv,
    project: Conv,
    residual: bool,
}

impl MbConv {
    fn load(
        vb: VarBuilder,
        kernel: usize,
        stride: usize,
        expand: usize,
        c_in: usize,
        c_out: usize,
    ) -> candle_core::Result<Self> {
        let mid = c_in * expand;
        let expand = if expand != 1 {
            let spec = ConvSpec::new(c_in, mid, 1, 1, TfSame).act(Relu6);
            Some(Conv::load_with_bn(
                vb.pp("_expand_conv"),
                vb.pp("_bn0"),
                &spec,
                BN_EPS,
            )?)
        } else {
            None
        };
        let spec = ConvSpec::new(mid, mid, kernel, stride, TfSame)
            .groups(mid)
            .act(Relu6);
        let depthwise = Conv::load_with_bn(vb.pp("_depthwise_conv"), vb.pp("_bn1"), &spec, BN_EPS)?;
        let spec = ConvSpec::new(mid, c_out, 1, 1, TfSame);
        let project = Conv::load_with_bn(vb.pp("_project_conv"), vb.pp("_bn2"), &spec, BN_EPS)?;
        Ok(Self {
            expand,
            depthwise,
            project,
            residual: stride == 1 && c_in == c_out,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = match &self.expand {
            Some(e) => e.forward(x)?,
            None => x.clone(),
        };
        let h = self.depthwise.forward(&h)?;
        self.project
            .forward_residual(&h, self.residual.then_some(x))
    }
}

pub struct EfficientNetLite0 {
    stem: Conv,
    blocks: Vec<MbConv>,
    head: Conv,
    fc: Option<Linear>,
}

impl EfficientNetLite0 {
    pub fn load(vb: VarBuilder) -> candle_core::Result<Self> {
        let stem = Conv::load_with_bn(
            vb.pp("_conv_stem"),
            vb.pp("_bn0"),
            &ConvSpec::new(3, 32, 3, 2, TfSame).act(Relu6),
            BN_EPS,
        )?;
        let mut blocks = Vec::new();
        for &(repeats, kernel, stride, expand, c_in, c_out) in &STAGES {
            for r in 0..repeats {
                let (s, i) = if r == 0 { (stride, c_in) } else { (1, c_out) };
                blocks.push(MbConv::load(
                    vb.pp(format!("_blocks.{}", blocks.len())),
                    kernel,
                    s,
                    expand,
                    i,
                    c_out,
                )?);
            }
        }
        let head = Conv::load_with_bn(
            vb.pp("_conv_head"),
            vb.pp("_bn1"),
            &ConvSpec::new(320, 1280, 1, 1, TfSame).act(Relu6),
            BN_EPS,
        )?;
        let fc = candle_nn::linear(1280, 1000, vb.pp("_fc")).ok();
        Ok(Self {
            stem,
            blocks,
            head,
            fc,
        })
    }

    /// Pooled 1280-d feature before the classifier.
    pub fn features(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = self.stem.forward(x)?;
        for b in &self.blocks {
            h = b.forward(&h)?;
        }
        global_avg_pool(&self.head.forward(&h)?)
    }

    pub fn classifier(&self) -> Option<&Linear> {
        self.fc.as_ref()
    }
}
