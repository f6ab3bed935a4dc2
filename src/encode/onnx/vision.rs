//! A vision tower in an ONNX graph. Two input kinds, told apart by the graph's input type:
//! float NCHW pixels already normalised (transformers.js, Immich's first generation), or uint8
//! NHWC pixels that the graph normalises itself (Immich's newer graphs).

use std::path::Path;

use candle_core::Tensor;
use ort::value::TensorElementType;

use super::{
    graph::{Feed, Graph},
    layout::LayoutKind,
    OnnxError,
};
use crate::kit::Preprocess;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pixels {
    FloatNchw,
    Uint8Nhwc,
}

pub struct OnnxVision {
    name: String,
    kind: LayoutKind,
    graph: Graph,
    pixels: Pixels,
    side: usize,
    preprocess: Preprocess,
}

impl OnnxVision {
    pub fn load(
        dir: &Path,
        name: &str,
        kind: LayoutKind,
        threads: usize,
    ) -> Result<Self, OnnxError> {
        let layout = kind.vision(dir)?;
        let graph = Graph::load(&layout.model, threads)?;
        let unfit = |message: String| OnnxError::Graph {
            path: layout.model.clone(),
            message,
        };
        let [input] = graph.inputs.as_slice() else {
            return Err(unfit(format!(
                "{} inputs: a vision tower takes one image tensor",
                graph.inputs.len()
            )));
        };
        let (pixels, channel_axis, spatial) = match (input.element, input.shape.len()) {
            (TensorElementType::Float32, 4) => (Pixels::FloatNchw, 1, [2, 3]),
            (TensorElementType::Uint8, 4) => (Pixels::Uint8Nhwc, 3, [1, 2]),
            (element, _) => {
                return Err(unfit(format!(
                    "input {:?} is {element:?} {:?}: a vision tower takes float NCHW or uint8 NHWC pixels",
                    input.name, input.shape
                )))
            }
        };
        let side = layout.preprocess.crop as usize;
        if input.fixed(channel_axis).is_some_and(|c| c != 3) {
            return Err(unfit(format!(
                "input {:?} {:?} is not RGB",
                input.name, input.shape
            )));
        }
        for axis in spatial {
            if input.fixed(axis).is_some_and(|s| s != side) {
                return Err(unfit(format!(
                    "input {:?} {:?} does not take the {side}×{side} images the preprocessing config makes",
                    input.name, input.shape
                )));
            }
        }
        let mut preprocess = layout.preprocess;
        if pixels == Pixels::Uint8Nhwc {
            // the graph normalises: hand it the 8-bit pixels (x/255 - 0) / (1/255) = x
            preprocess.mean = [0.0; 3];
            preprocess.std = [1.0 / 255.0; 3];
        }
        Ok(Self {
            name: name.to_string(),
            kind,
            graph,
            pixels,
            side,
            preprocess,
        })
    }

    pub fn dims(&self) -> usize {
        self.graph.dims
    }

    /// How images become this graph's input.
    pub fn preprocess(&self) -> &Preprocess {
        &self.preprocess
    }

    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "model": self.name,
            "backend": "onnxruntime",
            "layout": self.kind,
            "graph": self.graph.file_name(),
            "pixels": match self.pixels { Pixels::FloatNchw => "float32 NCHW", Pixels::Uint8Nhwc => "uint8 NHWC" },
        })
    }

    /// `[N, 3, side, side]` preprocessed images (f32) → `[N, dims]` embeddings.
    pub fn features(&self, x: &Tensor) -> Result<Tensor, OnnxError> {
        let tensor = |e: candle_core::Error| OnnxError::Tensor(e.to_string());
        let (n, c, h, w) = x.dims4().map_err(tensor)?;
        if (c, h, w) != (3, self.side, self.side) {
            return Err(OnnxError::Tensor(format!(
                "images of [3, {}, {}] expected, not [{c}, {h}, {w}]",
                self.side, self.side
            )));
        }
        let data: Vec<f32> = x
            .to_dtype(candle_core::DType::F32)
            .and_then(|x| x.flatten_all())
            .and_then(|x| x.to_vec1())
            .map_err(tensor)?;
        let image = 3 * h * w;
        let chunk = self.graph.fixed_batch().unwrap_or(n.max(1));
        let mut out = Vec::with_capacity(n * self.dims());
        for rows in data.chunks(chunk * image) {
            let count = rows.len() / image;
            let batch = chunk.max(count);
            let feed = match self.pixels {
                Pixels::FloatNchw => {
                    let mut v = rows.to_vec();
                    v.resize(batch * image, 0.0);
                    Feed::F32(vec![batch, 3, h, w], v)
                }
                Pixels::Uint8Nhwc => {
                    let mut v = vec![0u8; batch * image];
                    for (i, px) in rows.chunks(image).enumerate() {
                        for ch in 0..3 {
                            for p in 0..h * w {
                                v[i * image + p * 3 + ch] =
                                    px[ch * h * w + p].round().clamp(0.0, 255.0) as u8;
                            }
                        }
                    }
                    Feed::U8(vec![batch, h, w, 3], v)
                }
            };
            let embeddings = self.graph.run(vec![feed], batch)?;
            out.extend_from_slice(&embeddings[..count * self.dims()]);
        }
        Tensor::from_vec(out, (n, self.dims()), x.device()).map_err(tensor)
    }
}
