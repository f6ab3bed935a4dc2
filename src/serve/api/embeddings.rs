//! OpenAI's embeddings shapes (`POST /v1/embeddings`, `GET /v1/models`), so the `openai` client,
//! LangChain and LlamaIndex talk to xmodal as to any embedding service; images ride in the same
//! call as `{"image": "data:image/png;base64,…"}` items (or bare base64), as Jina's and
//! Infinity's APIs take them.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::super::{error::ApiError, service::EmbedInput};

/// Inputs per call at most (OpenAI's own limit is 2048; the whole call is one encoder batch).
pub const MAX_INPUTS: usize = 256;
/// Images per call at most (each batch of them holds its activations).
pub const MAX_IMAGES: usize = 8;
/// Characters of one image item at most: a data URL or base64 of ~6 MiB of image bytes.
pub const MAX_IMAGE_CHARS: usize = 8 << 20;

#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbeddingRequest {
    /// A text, or a list of texts and images.
    pub input: EmbeddingInput,
    /// The space to embed into (`GET /v1/models`); default: the first.
    #[serde(default)]
    pub model: Option<String>,
    /// `float` (default) or `base64` (little-endian f32, as OpenAI's client decodes it).
    #[serde(default)]
    pub encoding_format: Encoding,
    /// Refused: no model here is trained for truncated embeddings.
    #[serde(default)]
    pub dimensions: Option<serde_json::Value>,
    /// Accepted and ignored (OpenAI's end-user id).
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    Text(String),
    Items(Vec<EmbeddingItem>),
    /// One text's token ids (OpenAI accepts them): refused, as in items.
    Tokens(Vec<i64>),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingItem {
    Text(String),
    Image(ImageItem),
    /// Token ids (OpenAI accepts them): refused, tokenizers differ between models.
    Tokens(Vec<i64>),
}

/// An image in an embeddings call.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ImageItem {
    /// `data:image/…;base64,…`, or bare base64 of JPEG, PNG or WebP bytes. Not a URL: the
    /// server does not fetch what clients name.
    pub image: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingList {
    /// Always `list`.
    pub object: String,
    pub data: Vec<EmbeddingData>,
    pub model: String,
    pub usage: Usage,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingData {
    /// Always `embedding`.
    pub object: String,
    pub index: usize,
    /// The L2-normalised vector: numbers, or base64 of little-endian f32 with
    /// `encoding_format: base64`.
    #[schema(value_type = Object)]
    pub embedding: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    /// Tokens of the texts (images count none).
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    pub data: Vec<ModelInfo>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelInfo {
    /// What `model` names in requests.
    pub id: String,
    /// Always `model`.
    pub object: String,
    pub created: u64,
    pub owned_by: String,
    /// The projector and encoders behind it.
    pub description: String,
}

/// How vectors are written out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Float,
    Base64,
}

impl EmbeddingRequest {
    /// Validate the call: its inputs as the service takes them, and the encoding.
    pub fn validate(self) -> Result<(Vec<EmbedInput>, Encoding), ApiError> {
        if self.dimensions.is_some() {
            return Err(ApiError::Invalid(
                "dimensions is not supported: no model here is trained for truncated (Matryoshka) \
                 embeddings, and cutting a vector that was not would change what it means; leave \
                 it out to get the full vector"
                    .into(),
            ));
        }
        let encoding = self.encoding_format;
        let items = match self.input {
            EmbeddingInput::Text(t) => vec![EmbeddingItem::Text(t)],
            EmbeddingInput::Items(items) => items,
            EmbeddingInput::Tokens(t) => vec![EmbeddingItem::Tokens(t)],
        };
        if items.is_empty() {
            return Err(ApiError::Invalid("input must not be an empty list".into()));
        }
        if items.len() > MAX_INPUTS {
            return Err(ApiError::Invalid(format!(
                "input has {} items; at most {MAX_INPUTS} per call",
                items.len()
            )));
        }
        let images = items
            .iter()
            .filter(|i| matches!(i, EmbeddingItem::Image(_)))
            .count();
        if images > MAX_IMAGES {
            return Err(ApiError::Invalid(format!(
                "input has {images} images; at most {MAX_IMAGES} per call"
            )));
        }
        let inputs = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                EmbeddingItem::Text(t) => {
                    let t: String = t.trim().chars().take(super::MAX_QUERY_CHARS).collect();
                    if t.is_empty() {
                        return Err(ApiError::Invalid(format!("input[{i}] is an empty text")));
                    }
                    Ok(EmbedInput::Text(t))
                }
                EmbeddingItem::Image(img) => Ok(EmbedInput::Image(image_bytes(i, &img.image)?)),
                EmbeddingItem::Tokens(_) => Err(ApiError::Invalid(format!(
                    "input[{i}] is a list of token ids; send the text (this server tokenizes for \
                     its own models)"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((inputs, encoding))
    }
}

/// An image item's bytes: a base64 data URL or bare base64. URLs are refused by design.
fn image_bytes(i: usize, value: &str) -> Result<axum::body::Bytes, ApiError> {
    if value.len() > MAX_IMAGE_CHARS {
        return Err(ApiError::TooLarge(format!(
            "input[{i}]: an image of {:.1} MiB as text; at most {} MiB per image in an \
             embeddings call (upload larger files with POST /v1/images)",
            value.len() as f64 / (1 << 20) as f64,
            MAX_IMAGE_CHARS >> 20
        )));
    }
    let lower = value.get(..12).unwrap_or(value).to_ascii_lowercase();
    if ["http://", "https://", "ftp://", "file:"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return Err(ApiError::Invalid(format!(
            "input[{i}]: image URLs are not fetched: a server that downloads addresses its \
             clients name can be pointed at internal services (SSRF); send the image itself as \
             a data URL (data:image/png;base64,…) or bare base64"
        )));
    }
    let data = match value.strip_prefix("data:") {
        Some(rest) => {
            let (meta, data) = rest.split_once(',').ok_or_else(|| {
                ApiError::Invalid(format!("input[{i}]: a data URL without a comma"))
            })?;
            if !meta.ends_with(";base64") {
                return Err(ApiError::Invalid(format!(
                    "input[{i}]: the data URL must be base64 (data:image/png;base64,…)"
                )));
            }
            let media = meta.trim_end_matches(";base64");
            if !(media.is_empty() || media.starts_with("image/")) {
                return Err(ApiError::UnsupportedMedia(format!(
                    "input[{i}]: {media} is not an image"
                )));
            }
            data
        }
        None => value,
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| ApiError::Invalid(format!("input[{i}]: not valid base64: {e}")))?;
    Ok(bytes.into())
}

impl EmbeddingData {
    pub fn new(index: usize, vector: &[f32], encoding: Encoding) -> Self {
        let embedding = match encoding {
            Encoding::Float => serde_json::to_value(vector).expect("floats serialise"),
            Encoding::Base64 => {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                base64::engine::general_purpose::STANDARD
                    .encode(bytes)
                    .into()
            }
        };
        Self {
            object: "embedding".into(),
            index,
            embedding,
        }
    }
}
