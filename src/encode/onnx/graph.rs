//! One ONNX graph: its inputs and output told apart by position, type and shape (names differ
//! between exporters and generations of the same exporter), and runs on it.

use std::{
    borrow::Cow,
    path::{Path, PathBuf},
    sync::Mutex,
};

use ort::{
    session::{Session, SessionInputValue},
    value::{DynValue, Tensor, TensorElementType, ValueType},
};

use super::{runtime, OnnxError};

/// A graph input or output as the file declares it; `-1` marks a symbolic dimension.
#[derive(Debug, Clone)]
pub struct Port {
    pub name: String,
    pub element: TensorElementType,
    pub shape: Vec<i64>,
}

impl Port {
    /// The fixed size of dimension `axis`, if the graph fixes it.
    pub fn fixed(&self, axis: usize) -> Option<usize> {
        self.shape
            .get(axis)
            .filter(|&&d| d > 0)
            .map(|&d| d as usize)
    }
}

/// A tensor to feed: a shape and its elements.
pub enum Feed {
    I32(Vec<usize>, Vec<i32>),
    I64(Vec<usize>, Vec<i64>),
    F32(Vec<usize>, Vec<f32>),
    U8(Vec<usize>, Vec<u8>),
}

pub struct Graph {
    path: PathBuf,
    /// `run` takes the session mutably; ONNX Runtime parallelises inside one run.
    session: Mutex<Session>,
    pub inputs: Vec<Port>,
    /// Index of the embedding among the outputs: the first 2-D float tensor (transformers.js
    /// graphs also return the last hidden state, 3-D).
    output: usize,
    /// Its width.
    pub dims: usize,
}

fn port(name: &str, dtype: &ValueType) -> Option<Port> {
    match dtype {
        ValueType::Tensor { ty, shape, .. } => Some(Port {
            name: name.to_string(),
            element: *ty,
            shape: shape.iter().copied().collect(),
        }),
        _ => None,
    }
}

impl Graph {
    pub fn load(path: &Path, threads: usize) -> Result<Self, OnnxError> {
        let session = runtime::session(path, threads)?;
        let unfit = |message: String| OnnxError::Graph {
            path: path.to_path_buf(),
            message,
        };
        let inputs = session
            .inputs()
            .iter()
            .map(|i| {
                port(i.name(), i.dtype())
                    .ok_or_else(|| unfit(format!("input {:?} is not a tensor", i.name())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let outputs: Vec<Option<Port>> = session
            .outputs()
            .iter()
            .map(|o| port(o.name(), o.dtype()))
            .collect();
        let (output, dims) = outputs
            .iter()
            .enumerate()
            .find_map(|(i, o)| {
                let o = o.as_ref()?;
                (o.element == TensorElementType::Float32 && o.shape.len() == 2)
                    .then(|| (i, o.fixed(1)))
            })
            .ok_or_else(|| {
                unfit("no output is a [batch, dims] float tensor (an embedding)".into())
            })?;
        let dims = dims.ok_or_else(|| unfit("the embedding's width is not fixed".into()))?;
        Ok(Self {
            path: path.to_path_buf(),
            session: Mutex::new(session),
            inputs,
            output,
            dims,
        })
    }

    /// The graph's file name (which variant of a tower runs: `text_model_quantized.onnx`, …).
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The batch the graph fixes (Immich's first generation: 1), or `None` when symbolic.
    pub fn fixed_batch(&self) -> Option<usize> {
        self.inputs.first().and_then(|p| p.fixed(0))
    }

    /// Runs the graph on one tensor per input (in the inputs' order); `[rows, dims]` embeddings.
    pub fn run(&self, feeds: Vec<Feed>, rows: usize) -> Result<Vec<f32>, OnnxError> {
        let fail = |message: String| OnnxError::Run {
            path: self.path.clone(),
            message,
        };
        let values = feeds
            .into_iter()
            .map(|feed| -> ort::Result<DynValue> {
                Ok(match feed {
                    Feed::I32(shape, data) => Tensor::from_array((shape, data))?.into_dyn(),
                    Feed::I64(shape, data) => Tensor::from_array((shape, data))?.into_dyn(),
                    Feed::F32(shape, data) => Tensor::from_array((shape, data))?.into_dyn(),
                    Feed::U8(shape, data) => Tensor::from_array((shape, data))?.into_dyn(),
                })
            })
            .collect::<ort::Result<Vec<_>>>()
            .map_err(|e| fail(e.to_string()))?;
        let named: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = self
            .inputs
            .iter()
            .zip(values)
            .map(|(port, value)| (Cow::Owned(port.name.clone()), value.into()))
            .collect();
        let mut session = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let outputs = session.run(named).map_err(|e| fail(e.to_string()))?;
        let (shape, data) = outputs[self.output]
            .try_extract_tensor::<f32>()
            .map_err(|e| fail(e.to_string()))?;
        if shape.len() != 2 || shape[0] as usize != rows || shape[1] as usize != self.dims {
            return Err(fail(format!(
                "the embedding came out {:?}, not [{rows}, {}]",
                &shape[..],
                self.dims
            )));
        }
        Ok(data.to_vec())
    }
}
