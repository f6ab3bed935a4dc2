//! Building blocks shared by the CNNs: convolutions with BatchNorm folded in at load time
//! (inference never needs the separate statistics), TF-style "same" padding, activations.

use std::sync::Arc;

use candle_core::{DType, Module, Tensor, D};
use candle_nn::VarBuilder;

use super::{
    depthwise::DepthwiseConv, depthwise_generic::depthwise_conv, epilogue::Epilogue, im2col::Im2Col,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Identity,
    Relu,
    Relu6,
}

impl Activation {
    pub fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Identity => Ok(x.clone()),
            Self::Relu => x.relu(),
            Self::Relu6 => x.clamp(0f32, 6f32),
        }
    }

    pub fn apply_slice(self, xs: &mut [f32]) {
        match self {
            Self::Identity => {}
            Self::Relu => xs.iter_mut().for_each(|x| *x = x.max(0.0)),
            Self::Relu6 => xs.iter_mut().for_each(|x| *x = x.clamp(0.0, 6.0)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// PyTorch: the same padding on every side.
    Symmetric(usize),
    /// TensorFlow "SAME": output = ceil(input / stride), any odd pixel of padding goes bottom/right.
    TfSame,
}

/// A 2-d convolution (with bias after BatchNorm folding) plus its activation.
pub struct Conv {
    weight: Tensor,
    bias: Option<Tensor>,
    kernel: usize,
    stride: usize,
    groups: usize,
    padding: Padding,
    activation: Activation,
    /// Host copies of weight and bias for the CPU depthwise kernel, made once at load.
    depthwise: Option<HostKernel>,
    /// Host copy of the bias (zeros without one) for the CPU epilogue of a matrix-product
    /// convolution, made once at load.
    epilogue_bias: Option<Arc<[f32]>>,
    /// One group per channel, channels in = out: elsewhere than our CPU kernel, the tap-sum
    /// depthwise convolution instead of candle's convolution per group.
    depthwise_shape: bool,
}

/// Weights of a depthwise convolution, copied to host memory for [`DepthwiseConv`].
struct HostKernel {
    weight: Arc<[f32]>,
    bias: Arc<[f32]>,
}

pub struct ConvSpec {
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub groups: usize,
    pub padding: Padding,
    pub activation: Activation,
}

impl ConvSpec {
    /// The checkpoint's weight shape: `[c_out, c_in / groups, k, k]`.
    fn weight_shape(&self) -> (usize, usize, usize, usize) {
        (
            self.c_out,
            self.c_in / self.groups,
            self.kernel,
            self.kernel,
        )
    }

    pub fn new(c_in: usize, c_out: usize, kernel: usize, stride: usize, padding: Padding) -> Self {
        Self {
            c_in,
            c_out,
            kernel,
            stride,
            groups: 1,
            padding,
            activation: Activation::Identity,
        }
    }
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
    pub fn act(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }
}

impl Conv {
    /// A convolution without BatchNorm; `bias` says whether the checkpoint has one.
    pub fn load(vb: VarBuilder, spec: &ConvSpec, bias: bool) -> candle_core::Result<Self> {
        let weight = vb.get(spec.weight_shape(), "weight")?;
        let bias = if bias {
            Some(vb.get(spec.c_out, "bias")?)
        } else {
            None
        };
        Self::from_parts(weight, bias, spec)
    }

    /// A bias-free convolution followed by eval-mode BatchNorm, folded into one convolution:
    /// w' = w·γ/√(σ²+ε), b' = β − μ·γ/√(σ²+ε).
    pub fn load_with_bn(
        conv: VarBuilder,
        bn: VarBuilder,
        spec: &ConvSpec,
        eps: f64,
    ) -> candle_core::Result<Self> {
        // Fold in f32 whatever the model runs in, then round once: folding in f16 would round
        // √(σ²+ε) and the products too.
        let dtype = conv.dtype();
        let (conv, bn) = (conv.to_dtype(DType::F32), bn.to_dtype(DType::F32));
        let weight = conv.get(spec.weight_shape(), "weight")?;
        let gamma = bn.get(spec.c_out, "weight")?;
        let beta = bn.get(spec.c_out, "bias")?;
        let mean = bn.get(spec.c_out, "running_mean")?;
        let var = bn.get(spec.c_out, "running_var")?;
        let scale = gamma.broadcast_div(&(var + eps)?.sqrt()?)?;
        let weight = weight
            .broadcast_mul(&scale.reshape((spec.c_out, 1, 1, 1))?)?
            .to_dtype(dtype)?;
        let bias = (beta - mean.mul(&scale)?)?.to_dtype(dtype)?;
        Self::from_parts(weight, Some(bias), spec)
    }

    fn from_parts(
        weight: Tensor,
        bias: Option<Tensor>,
        spec: &ConvSpec,
    ) -> candle_core::Result<Self> {
        let depthwise_shape =
            spec.groups > 1 && spec.groups == spec.c_in && spec.c_in == spec.c_out;
        let cpu = crate::device::cpu_kernels_for(&weight);
        let host_bias = || -> candle_core::Result<Arc<[f32]>> {
            Ok(match &bias {
                Some(b) => b.to_vec1()?.into(),
                None => vec![0.0; spec.c_out].into(),
            })
        };
        let depthwise = if depthwise_shape && cpu {
            Some(HostKernel {
                weight: weight.flatten_all()?.to_vec1::<f32>()?.into(),
                bias: host_bias()?,
            })
        } else {
            None
        };
        let epilogue_bias = (spec.groups == 1 && cpu).then(host_bias).transpose()?;
        Ok(Self {
            depthwise,
            epilogue_bias,
            depthwise_shape,
            weight,
            bias,
            kernel: spec.kernel,
            stride: spec.stride,
            groups: spec.groups,
            padding: spec.padding,
            activation: spec.activation,
        })
    }

    fn pads(&self, h: usize, w: usize) -> [usize; 4] {
        match self.padding {
            Padding::Symmetric(p) => [p; 4],
            Padding::TfSame => {
                let same = |size: usize| {
                    let out = size.div_ceil(self.stride);
                    let total = ((out - 1) * self.stride + self.kernel).saturating_sub(size);
                    (total / 2, total - total / 2)
                };
                let (t, b) = same(h);
                let (l, r) = same(w);
                [t, b, l, r]
            }
        }
    }
}

impl Module for Conv {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_residual(x, None)
    }
}

impl Conv {
    /// `act(conv(x) + bias + residual)`: a residual block's last convolution, with the
    /// shortcut added before the activation.
    pub fn forward_residual(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let pads = self.pads(h, w);
        if let (Some(HostKernel { weight, bias }), true) =
            (&self.depthwise, crate::device::cpu_kernels_for(x))
        {
            let op = DepthwiseConv {
                weight: weight.clone(),
                bias: bias.clone(),
                kernel: self.kernel,
                stride: self.stride,
                pads,
                activation: self.activation,
            };
            let y = x.contiguous()?.apply_op1_no_bwd(&op)?;
            if residual.is_some() {
                // the kernel applies the activation; a shortcut would have to come before it
                candle_core::bail!("depthwise-conv2d: no residual input")
            }
            return Ok(y);
        }
        let (n, c, _, _) = x.dims4()?;
        let c_out = self.weight.dim(0)?;
        let y = if self.groups == 1 && crate::device::cpu_kernels_for(x) {
            // One matrix product per image, [C_out, C·k·k] @ [C·k·k, OH·OW], already NCHW.
            // A 1×1, stride-1 convolution needs no column matrix: the input plane is one.
            let w2 = self.weight.reshape((c_out, ()))?.broadcast_left(n)?;
            let y = if self.kernel == 1 && self.stride == 1 && pads == [0; 4] {
                w2.matmul(&x.reshape((n, c, h * w))?)?
                    .reshape((n, c_out, h, w))?
            } else {
                let op = Im2Col {
                    kernel: self.kernel,
                    stride: self.stride,
                    pads,
                };
                let (oh, ow) = op.output_size(h, w);
                w2.matmul(&x.contiguous()?.apply_op1_no_bwd(&op)?)?
                    .reshape((n, c_out, oh, ow))?
            };
            if let (Some(bias), true) = (&self.epilogue_bias, y.is_contiguous()) {
                // the product is a fresh tensor of its own: finish it in place
                let epilogue = Epilogue {
                    bias: bias.clone(),
                    activation: self.activation,
                };
                epilogue.apply(&y, residual)?;
                return Ok(y);
            }
            y
        } else if self.depthwise_shape {
            depthwise_conv(x, &self.weight, self.stride, pads)?
        } else {
            let [t, b, l, r] = pads;
            if t == b && l == r && t == l {
                x.conv2d(&self.weight, t, self.stride, 1, self.groups)?
            } else {
                x.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?.conv2d(
                    &self.weight,
                    0,
                    self.stride,
                    1,
                    self.groups,
                )?
            }
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?)?,
            None => y,
        };
        let y = match residual {
            Some(r) => (y + r)?,
            None => y,
        };
        self.activation.apply(&y)
    }
}

/// Mean over the spatial dimensions: `[N, C, H, W]` → `[N, C]`.
pub fn global_avg_pool(x: &Tensor) -> candle_core::Result<Tensor> {
    x.mean(D::Minus1)?.mean(D::Minus1)
}
