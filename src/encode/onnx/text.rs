//! A text tower in an ONNX graph: the directory's `tokenizer.json` (through the `tokenizers`
//! crate, as Immich and transformers.js read it), padding and cleaning as the publisher's runtime
//! does, then the graph.

use std::path::Path;

use candle_core::{Device, Tensor};
use ort::value::TensorElementType;
use tokenizers::{Tokenizer, TruncationParams};

use super::{
    graph::{Feed, Graph},
    layout::{LayoutKind, TextClean},
    OnnxError,
};

pub struct OnnxText {
    name: String,
    kind: LayoutKind,
    graph: Graph,
    tokenizer: Tokenizer,
    pad_id: u32,
    context: usize,
    pad_to_context: bool,
    clean: TextClean,
    /// int32 (Immich) or int64 (transformers.js) ids.
    ids_int64: bool,
    /// The graph takes an attention mask as its second input (M-CLIP): whether in int64.
    mask_int64: Option<bool>,
}

fn is_integer(element: TensorElementType) -> bool {
    matches!(element, TensorElementType::Int32 | TensorElementType::Int64)
}

impl OnnxText {
    pub fn load(
        dir: &Path,
        name: &str,
        kind: LayoutKind,
        threads: usize,
    ) -> Result<Self, OnnxError> {
        let layout = kind.text(dir)?;
        let mut tokenizer = Tokenizer::from_file(&layout.tokenizer)
            .map_err(|e| OnnxError::file(&layout.tokenizer, e.to_string()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: layout.context,
                ..Default::default()
            }))
            .map_err(|e| OnnxError::file(&layout.tokenizer, e.to_string()))?;
        tokenizer.with_padding(None);
        let pad_id = tokenizer.token_to_id(&layout.pad_token).ok_or_else(|| {
            OnnxError::file(
                &layout.tokenizer,
                format!(
                    "the pad token {:?} is not in the vocabulary",
                    layout.pad_token
                ),
            )
        })?;
        let graph = Graph::load(&layout.model, threads)?;
        let unfit = |message: String| OnnxError::Graph {
            path: layout.model.clone(),
            message,
        };
        let ids = graph
            .inputs
            .first()
            .ok_or_else(|| unfit("the graph has no inputs".into()))?;
        if !is_integer(ids.element) || ids.shape.len() != 2 {
            return Err(unfit(format!(
                "input {:?} is {:?} {:?}: a text tower takes [batch, tokens] integer ids",
                ids.name, ids.element, ids.shape
            )));
        }
        if let Some(fixed) = ids.fixed(1) {
            if fixed != layout.context {
                return Err(unfit(format!(
                    "input {:?} takes {fixed} tokens, the config says {}",
                    ids.name, layout.context
                )));
            }
        }
        let mask_int64 = match &graph.inputs[1..] {
            [] => None,
            [mask] if is_integer(mask.element) && mask.shape.len() == 2 => {
                Some(mask.element == TensorElementType::Int64)
            }
            more => {
                return Err(unfit(format!(
                    "inputs {:?}: a text tower takes ids and at most an attention mask",
                    more.iter().map(|p| &p.name).collect::<Vec<_>>()
                )))
            }
        };
        Ok(Self {
            name: name.to_string(),
            kind,
            ids_int64: ids.element == TensorElementType::Int64,
            graph,
            tokenizer,
            pad_id,
            context: layout.context,
            pad_to_context: layout.pad_to_context,
            clean: layout.clean,
            mask_int64,
        })
    }

    /// Token ids per text after cleaning and truncation, before padding.
    pub fn token_ids(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, OnnxError> {
        texts
            .iter()
            .map(|t| {
                self.tokenizer
                    .encode(self.clean.apply(t), true)
                    .map(|e| e.get_ids().to_vec())
                    .map_err(|e| OnnxError::Tokenizer(e.to_string()))
            })
            .collect()
    }

    pub fn count_tokens(&self, texts: &[&str]) -> Result<Vec<usize>, OnnxError> {
        Ok(self.token_ids(texts)?.iter().map(Vec::len).collect())
    }

    pub fn dims(&self) -> usize {
        self.graph.dims
    }

    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "model": self.name,
            "backend": "onnxruntime",
            "layout": self.kind,
            "context": self.context,
            "graph": self.graph.file_name(),
        })
    }

    /// One row per text, `[texts.len(), dims]`, as the graph returns it (Immich's graphs
    /// normalise, transformers.js' do not; the index normalises both).
    pub fn encode(&self, texts: &[&str]) -> Result<Tensor, OnnxError> {
        let ids = self.token_ids(texts)?;
        let chunk = self.graph.fixed_batch().unwrap_or(ids.len().max(1));
        let mut out = Vec::with_capacity(texts.len() * self.dims());
        for rows in ids.chunks(chunk) {
            let length = if self.pad_to_context {
                self.context
            } else {
                rows.iter().map(Vec::len).max().unwrap_or(1)
            };
            let batch = chunk.max(rows.len());
            let mut flat = vec![self.pad_id as i64; batch * length];
            let mut mask = vec![0i64; batch * length];
            for (r, row) in rows.iter().enumerate() {
                for (c, &id) in row.iter().enumerate() {
                    flat[r * length + c] = id as i64;
                    mask[r * length + c] = 1;
                }
            }
            let shape = vec![batch, length];
            let typed = |v: Vec<i64>, int64: bool| {
                if int64 {
                    Feed::I64(shape.clone(), v)
                } else {
                    Feed::I32(shape.clone(), v.into_iter().map(|x| x as i32).collect())
                }
            };
            let mut feeds = vec![typed(flat, self.ids_int64)];
            if let Some(int64) = self.mask_int64 {
                feeds.push(typed(mask, int64));
            }
            let embeddings = self.graph.run(feeds, batch)?;
            out.extend_from_slice(&embeddings[..rows.len() * self.dims()]);
        }
        Ok(Tensor::from_vec(
            out,
            (texts.len(), self.dims()),
            &Device::Cpu,
        )?)
    }
}
