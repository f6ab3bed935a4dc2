//! VGG16 (Simonyan & Zisserman), yielding fc7: the 4096-d, post-ReLU activation of the second
//! fully-connected layer, the feature the original study (and Karpathy's `vgg_feats.mat`) used.
//!
//! Accepts torchvision key names (`features.N`, `classifier.{0,3,6}`) and timm's
//! `vgg16.tv_in1k` (`pre_logits.fc1` as a 4096×512×7×7 convolution, `pre_logits.fc2`, `head.fc`):
//! timm's convolutions over the 7×7 map are the same matrices, reshaped.

use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::layers::{Activation::Relu, Conv, ConvSpec, Padding::Symmetric};

/// Output channels per 3×3 convolution; 0 marks a 2×2 max-pool.
const CONFIG: [usize; 18] = [
    64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
];

enum Layer {
    Conv(Conv),
    Pool,
}

pub struct Vgg16 {
    layers: Vec<Layer>,
    fc6: Linear,
    fc7: Linear,
    fc8: Option<Linear>,
}

impl Vgg16 {
    pub fn load(vb: VarBuilder) -> candle_core::Result<Self> {
        let mut layers = Vec::new();
        let mut c_in = 3;
        let mut index = 0; // torchvision's Sequential index: conv, relu (, pool)
        for &c in &CONFIG {
            if c == 0 {
                layers.push(Layer::Pool);
                index += 1;
            } else {
                let spec = ConvSpec::new(c_in, c, 3, 1, Symmetric(1)).act(Relu);
                layers.push(Layer::Conv(Conv::load(
                    vb.pp(format!("features.{index}")),
                    &spec,
                    true,
                )?));
                index += 2;
                c_in = c;
            }
        }
        let (fc6, fc7, fc8) = if vb.contains_tensor("pre_logits.fc1.weight") {
            let p = vb.pp("pre_logits");
            let fc6 = Linear::new(
                p.get((4096, 512, 7, 7), "fc1.weight")?
                    .reshape((4096, 25088))?,
                Some(p.get(4096, "fc1.bias")?),
            );
            let fc7 = Linear::new(
                p.get((4096, 4096, 1, 1), "fc2.weight")?
                    .reshape((4096, 4096))?,
                Some(p.get(4096, "fc2.bias")?),
            );
            (
                fc6,
                fc7,
                candle_nn::linear(4096, 1000, vb.pp("head.fc")).ok(),
            )
        } else {
            let c = vb.pp("classifier");
            (
                candle_nn::linear(25088, 4096, c.pp(0))?,
                candle_nn::linear(4096, 4096, c.pp(3))?,
                candle_nn::linear(4096, 1000, c.pp(6)).ok(),
            )
        };
        Ok(Self {
            layers,
            fc6,
            fc7,
            fc8,
        })
    }

    /// fc7 (4096-d, after ReLU) for 224×224 inputs.
    pub fn features(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        for l in &self.layers {
            h = match l {
                Layer::Conv(c) => c.forward(&h)?,
                Layer::Pool => h.max_pool2d(2)?,
            };
        }
        let (n, c, height, width) = h.dims4()?;
        if (height, width) != (7, 7) {
            candle_core::bail!(
                "VGG16 expects 224×224 inputs (7×7 final map), got a {height}×{width} map"
            );
        }
        let h = self.fc6.forward(&h.reshape((n, c * 49))?)?.relu()?;
        self.fc7.forward(&h)?.relu()
    }

    pub fn classifier(&self) -> Option<&Linear> {
        self.fc8.as_ref()
    }
}
