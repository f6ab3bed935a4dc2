//! Depthwise 3×3/5×5 convolution as one CPU kernel.
//!
//! candle runs a grouped convolution as one small convolution per group and concatenates them:
//! for MobileNetV2's 960-channel depthwise layers that is 960 im2col+gemm calls. Here each
//! (image, channel) plane is an independent loop nest, run in parallel, with bias and the
//! activation applied in the same pass.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

use super::layers::Activation;
use crate::encode::cpu::{contiguous_f32, valid_columns};

pub struct DepthwiseConv {
    /// `[channels, k, k]`, BatchNorm already folded in.
    pub weight: Arc<[f32]>,
    pub bias: Arc<[f32]>,
    pub kernel: usize,
    pub stride: usize,
    /// (top, bottom, left, right) zero padding.
    pub pads: [usize; 4],
    pub activation: Activation,
}

impl DepthwiseConv {
    pub fn output_size(&self, h: usize, w: usize) -> (usize, usize) {
        crate::encode::cpu::conv_output_size(h, w, self.kernel, self.stride, self.pads)
    }
}

impl CustomOp1 for DepthwiseConv {
    fn name(&self) -> &'static str {
        "depthwise-conv2d"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, self.name())?;
        let (n, c, h, w) = layout.shape().dims4()?;
        if c * self.kernel * self.kernel != self.weight.len() {
            candle_core::bail!(
                "depthwise-conv2d: {c} channels but weights for {}",
                self.bias.len()
            )
        }
        let (oh, ow) = self.output_size(h, w);
        let (k, s) = (self.kernel, self.stride);
        let [pt, _, pl, _] = self.pads;
        let mut out = vec![0f32; n * c * oh * ow];
        out.par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(plane, o)| {
                let ch = plane % c;
                let input = &x[plane * h * w..(plane + 1) * h * w];
                let kw = &self.weight[ch * k * k..(ch + 1) * k * k];
                o.fill(self.bias[ch]);
                for ky in 0..k {
                    for oy in 0..oh {
                        let iy = (oy * s + ky) as isize - pt as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let row = &input[iy as usize * w..(iy as usize + 1) * w];
                        let orow = &mut o[oy * ow..(oy + 1) * ow];
                        for kx in 0..k {
                            let wv = kw[ky * k + kx];
                            let (lo, hi) = valid_columns(w, ow, kx, s, pl);
                            if s == 1 {
                                let base = lo + kx - pl;
                                for (dst, src) in
                                    orow[lo..hi].iter_mut().zip(&row[base..base + (hi - lo)])
                                {
                                    *dst += wv * src;
                                }
                            } else {
                                for ox in lo..hi {
                                    orow[ox] += wv * row[ox * s + kx - pl];
                                }
                            }
                        }
                    }
                }
                self.activation.apply_slice(o);
            });
        Ok((CpuStorage::F32(out), Shape::from((n, c, oh, ow))))
    }
}
