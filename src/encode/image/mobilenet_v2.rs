//! torchvision's MobileNetV2 (Sandler et al. 2018), torchvision key names: `features.0` (stem),
//! `features.1..=17` (inverted residuals, `conv.*`), `features.18` (1×1 to 1280), `classifier.1`.

use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::layers::{global_avg_pool, Activation::Relu6, Conv, ConvSpec, Padding::Symmetric};

const BN_EPS: f64 = 1e-5;

/// (expand ratio t, channels c, repeats n, stride s), from the paper's Table 2.
const SETTINGS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

struct InvertedResidual {
    layers: Vec<Conv>,
    residual: bool,
}

impl InvertedResidual {
    fn load(
        vb: VarBuilder,
        c_in: usize,
        c_out: usize,
        stride: usize,
        expand: usize,
    ) -> candle_core::Result<Self> {
        let vb = vb.pp("conv");
        let mid = c_in * expand;
        let mut layers = Vec::new();
        let mut i = 0;
        if expand != 1 {
            let spec = ConvSpec::new(c_in, mid, 1, 1, Symmetric(0)).act(Relu6);
            layers.push(Conv::load_with_bn(
                vb.pp("0.0"),
                vb.pp("0.1"),
                &spec,
                BN_EPS,
            )?);
            i = 1;
        }
        let spec = ConvSpec::new(mid, mid, 3, stride, Symmetric(1))
            .groups(mid)
            .act(Relu6);
        layers.push(Conv::load_with_bn(
            vb.pp(format!("{i}.0")),
            vb.pp(format!("{i}.1")),
            &spec,
            BN_EPS,
        )?);
        let spec = ConvSpec::new(mid, c_out, 1, 1, Symmetric(0));
        layers.push(Conv::load_with_bn(
            vb.pp(i + 1),
            vb.pp(i + 2),
            &spec,
            BN_EPS,
        )?);
        Ok(Self {
            layers,
            residual: stride == 1 && c_in == c_out,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (last, rest) = self.layers.split_last().expect("a block has layers");
        let mut h = x.clone();
        for l in rest {
            h = l.forward(&h)?;
        }
        last.forward_residual(&h, self.residual.then_some(x))
    }
}

pub struct MobileNetV2 {
    stem: Conv,
    blocks: Vec<InvertedResidual>,
    head: Conv,
    fc: Option<Linear>,
}

impl MobileNetV2 {
    pub fn load(vb: VarBuilder) -> candle_core::Result<Self> {
        let f = vb.pp("features");
        let stem = Conv::load_with_bn(
            f.pp("0.0"),
            f.pp("0.1"),
            &ConvSpec::new(3, 32, 3, 2, Symmetric(1)).act(Relu6),
            BN_EPS,
        )?;
        let mut blocks = Vec::new();
        let mut c_in = 32;
        for &(t, c, n, s) in &SETTINGS {
            for r in 0..n {
                blocks.push(InvertedResidual::load(
                    f.pp(blocks.len() + 1),
                    c_in,
                    c,
                    if r == 0 { s } else { 1 },
                    t,
                )?);
                c_in = c;
            }
        }
        let head = Conv::load_with_bn(
            f.pp("18.0"),
            f.pp("18.1"),
            &ConvSpec::new(320, 1280, 1, 1, Symmetric(0)).act(Relu6),
            BN_EPS,
        )?;
        let fc = candle_nn::linear(1280, 1000, vb.pp("classifier.1")).ok();
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
