//! im2col for NCHW input, feeding one matrix product per image: `[C_out, C·k·k] @ [C·k·k, OH·OW]`
//! gives the output plane already in NCHW order.
//!
//! candle's generic CPU convolution converts the input to NHWC serially, gathers tiles with
//! scattered writes and transposes the result back; for ResNet/VGG-sized layers that overhead
//! rivals the arithmetic. Here each row of the column matrix is one shifted (and, for stride 1,
//! contiguous) copy of an input plane, and rows are filled in parallel.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

use crate::encode::cpu::{contiguous_f32, valid_columns};

pub struct Im2Col {
    pub kernel: usize,
    pub stride: usize,
    /// (top, bottom, left, right) zero padding.
    pub pads: [usize; 4],
}

impl Im2Col {
    pub fn output_size(&self, h: usize, w: usize) -> (usize, usize) {
        crate::encode::cpu::conv_output_size(h, w, self.kernel, self.stride, self.pads)
    }
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col-nchw"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, self.name())?;
        let (n, c, h, w) = layout.shape().dims4()?;
        let (oh, ow) = self.output_size(h, w);
        let (k, s) = (self.kernel, self.stride);
        let [pt, _, pl, _] = self.pads;
        let rows_per_image = c * k * k;
        let mut out = vec![0f32; n * rows_per_image * oh * ow];
        out.par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(row, dst)| {
                let (img, r) = (row / rows_per_image, row % rows_per_image);
                let (ch, ky, kx) = (r / (k * k), (r / k) % k, r % k);
                let plane = &x[(img * c + ch) * h * w..(img * c + ch + 1) * h * w];
                let (lo, hi) = valid_columns(w, ow, kx, s, pl);
                for oy in 0..oh {
                    let iy = (oy * s + ky) as isize - pt as isize;
                    if iy < 0 || iy >= h as isize || lo >= hi {
                        continue; // stays zero: padding
                    }
                    let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                    let d = &mut dst[oy * ow..(oy + 1) * ow];
                    if s == 1 {
                        let base = lo + kx - pl;
                        d[lo..hi].copy_from_slice(&src[base..base + (hi - lo)]);
                    } else {
                        for ox in lo..hi {
                            d[ox] = src[ox * s + kx - pl];
                        }
                    }
                }
            });
        Ok((
            CpuStorage::F32(out),
            Shape::from((n, rows_per_image, oh * ow)),
        ))
    }
}
