//! torchvision's ResNet-50 (v1.5: stride on the 3×3 convolution), torchvision key names
//! (`conv1`, `bn1`, `layerN.M.{conv,bn}{1,2,3}`, `layerN.0.downsample.{0,1}`, `fc`).

use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::layers::{global_avg_pool, Activation::Relu, Conv, ConvSpec, Padding::Symmetric};

const BN_EPS: f64 = 1e-5;
const LAYERS: [(usize, usize, usize); 4] = [(3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)];

struct Bottleneck {
    conv1: Conv,
    conv2: Conv,
    conv3: Conv,
    downsample: Option<Conv>,
}

impl Bottleneck {
    fn load(vb: VarBuilder, c_in: usize, width: usize, stride: usize) -> candle_core::Result<Self> {
        let c_out = width * 4;
        let conv1 = Conv::load_with_bn(
            vb.pp("conv1"),
            vb.pp("bn1"),
            &ConvSpec::new(c_in, width, 1, 1, Symmetric(0)).act(Relu),
            BN_EPS,
        )?;
        let conv2 = Conv::load_with_bn(
            vb.pp("conv2"),
            vb.pp("bn2"),
            &ConvSpec::new(width, width, 3, stride, Symmetric(1)).act(Relu),
            BN_EPS,
        )?;
        let conv3 = Conv::load_with_bn(
            vb.pp("conv3"),
            vb.pp("bn3"),
            &ConvSpec::new(width, c_out, 1, 1, Symmetric(0)),
            BN_EPS,
        )?;
        let downsample = if stride != 1 || c_in != c_out {
            let d = vb.pp("downsample");
            Some(Conv::load_with_bn(
                d.pp(0),
                d.pp(1),
                &ConvSpec::new(c_in, c_out, 1, stride, Symmetric(0)),
                BN_EPS,
            )?)
        } else {
            None
        };
        Ok(Self {
            conv1,
            conv2,
            conv3,
            downsample,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = self
            .conv3
            .forward(&self.conv2.forward(&self.conv1.forward(x)?)?)?;
        let identity = match &self.downsample {
            Some(d) => d.forward(x)?,
            None => x.clone(),
        };
        (h + identity)?.relu()
    }
}

pub struct ResNet50 {
    stem: Conv,
    blocks: Vec<Bottleneck>,
    fc: Option<Linear>,
}

impl ResNet50 {
    pub fn load(vb: VarBuilder) -> candle_core::Result<Self> {
        let stem = Conv::load_with_bn(
            vb.pp("conv1"),
            vb.pp("bn1"),
            &ConvSpec::new(3, 64, 7, 2, Symmetric(3)).act(Relu),
            BN_EPS,
        )?;
        let mut blocks = Vec::new();
        let mut c_in = 64;
        for (l, &(n, width, stride)) in LAYERS.iter().enumerate() {
            for b in 0..n {
                blocks.push(Bottleneck::load(
                    vb.pp(format!("layer{}.{b}", l + 1)),
                    c_in,
                    width,
                    if b == 0 { stride } else { 1 },
                )?);
                c_in = width * 4;
            }
        }
        let fc = candle_nn::linear(2048, 1000, vb.pp("fc")).ok();
        Ok(Self { stem, blocks, fc })
    }

    /// Pooled 2048-d feature before `fc`.
    pub fn features(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.stem.forward(x)?;
        // 3×3/2 max-pool with padding 1. Inputs are post-ReLU (≥ 0), so zero padding equals
        // PyTorch's -inf padding: every window holds at least one real, non-negative value.
        let mut h = h
            .pad_with_zeros(2, 1, 1)?
            .pad_with_zeros(3, 1, 1)?
            .max_pool2d_with_stride(3, 2)?;
        for b in &self.blocks {
            h = b.forward(&h)?;
        }
        global_avg_pool(&h)
    }

    pub fn classifier(&self) -> Option<&Linear> {
        self.fc.as_ref()
    }
}
