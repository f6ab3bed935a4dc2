//! Request and response types of the HTTP API (see ../shared/API.md), with their OpenAPI schemas,
//! and the validation of what clients send.

pub mod duplicates;
pub mod embeddings;
pub mod filter;
pub mod photo;
pub mod terms;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    error::ApiError,
    service::{CaptionMatch, ImageMatch, Ranked},
};

pub const MAX_K: usize = 100;
pub const MAX_OFFSET: usize = 10_000;
/// Queries are cut to this many characters before tokenizing: the encoder reads its first 256
/// tokens anyway, and tokenizing costs time and memory in proportion to the whole text (a
/// 20 MiB JSON body would otherwise be tokenized whole).
pub const MAX_QUERY_CHARS: usize = 8192;

/// Unknown fields are refused (422 naming them), here and in [`PageParams`]: a client that sends
/// a field we do not have (a `filter`, say) must learn that it was not applied.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextSearchRequest {
    /// The caption to search with. Longer than the text encoder's limit is truncated, not refused.
    /// Give `query` or `terms`, not both.
    #[serde(default)]
    #[schema(min_length = 1)]
    pub query: Option<String>,
    /// A weighted query (1 to 8 terms): captions, images in the collection and uploaded images,
    /// combined in the joint space; negative weights subtract (`"beach" - "people"`).
    #[serde(default)]
    pub terms: Option<Vec<terms::QueryTermRequest>>,
    /// Results per page, 1..=100.
    #[serde(default = "default_k")]
    #[schema(minimum = 1, maximum = 100, default = 10)]
    pub k: i64,
    /// Results to skip (paging), 0..=10000.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 10000, default = 0)]
    pub offset: i64,
    /// Drop results scoring below this (cosine, -1..1).
    #[serde(default)]
    pub min_score: Option<f64>,
    /// Which heads to search with (see /ready's `models`); default: the first.
    #[serde(default)]
    pub model: Option<String>,
    /// Only images this filter keeps (EXIF, folder, your own fields).
    #[serde(default)]
    pub filter: Option<filter::SearchFilter>,
    /// `relevance` (default), or the relevant results by when they were taken: `taken_at`
    /// (newest first) or `taken_at_asc`; undated photos come last. The relevant results end
    /// where this query's scores drop from a high group to the rest (chosen per query; the
    /// score is returned as `cutoff`), among the best 200.
    #[serde(default)]
    pub order: Option<SearchOrder>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchOrder {
    Relevance,
    TakenAt,
    TakenAtAsc,
}

impl From<SearchOrder> for super::service::ResultOrder {
    fn from(o: SearchOrder) -> Self {
        match o {
            SearchOrder::Relevance => Self::Relevance,
            SearchOrder::TakenAt => Self::TakenAtNewest,
            SearchOrder::TakenAtAsc => Self::TakenAtOldest,
        }
    }
}

impl TextSearchRequest {
    pub fn filter(&self) -> Result<Option<crate::data::filter::Filter>, ApiError> {
        self.filter
            .as_ref()
            .map(|f| {
                f.validate()
                    .map_err(|e| ApiError::Invalid(format!("filter: {e}")))
            })
            .transpose()
    }
}

fn default_k() -> i64 {
    10
}

#[derive(Debug, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// Results per page, 1..=100.
    #[param(minimum = 1, maximum = 100)]
    pub k: Option<i64>,
    /// Results to skip, 0..=10000.
    #[param(minimum = 0, maximum = 10000)]
    pub offset: Option<i64>,
    /// Drop results scoring below this.
    pub min_score: Option<f64>,
    /// Which heads to search with (see /ready's `models`); default: the first.
    pub model: Option<String>,
    /// A filter as JSON (the `SearchFilter` schema, as in `/v1/search/text`): only images it
    /// keeps, or, for caption results, only captions of such images.
    pub filter: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileParams {
    /// Serve a JPEG thumbnail fitting in size×size pixels (16..=1024) instead of the original.
    #[param(minimum = 16, maximum = 1024)]
    pub size: Option<u32>,
}

/// A validated page request.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub k: usize,
    pub offset: usize,
    pub min_score: Option<f32>,
}

impl Page {
    pub fn new(
        k: Option<i64>,
        offset: Option<i64>,
        min_score: Option<f64>,
    ) -> Result<Self, ApiError> {
        let k = k.unwrap_or(10);
        if !(1..=MAX_K as i64).contains(&k) {
            return Err(ApiError::Invalid(format!(
                "k must be between 1 and {MAX_K}, got {k}"
            )));
        }
        let offset = offset.unwrap_or(0);
        if !(0..=MAX_OFFSET as i64).contains(&offset) {
            return Err(ApiError::Invalid(format!(
                "offset must be between 0 and {MAX_OFFSET}, got {offset}"
            )));
        }
        if let Some(m) = min_score {
            if !m.is_finite() {
                return Err(ApiError::Invalid(
                    "min_score must be a finite number".into(),
                ));
            }
        }
        Ok(Self {
            k: k as usize,
            offset: offset as usize,
            min_score: min_score.map(|m| m as f32),
        })
    }

    /// The index query this page asks for.
    pub fn query(self) -> crate::index::Query {
        crate::index::Query {
            k: self.k,
            offset: self.offset,
            min_score: self.min_score,
        }
    }
}

impl PageParams {
    pub fn page(&self) -> Result<Page, ApiError> {
        Page::new(self.k, self.offset, self.min_score)
    }

    pub fn filter(&self) -> Result<Option<crate::data::filter::Filter>, ApiError> {
        let Some(raw) = &self.filter else {
            return Ok(None);
        };
        let parsed: filter::SearchFilter =
            serde_json::from_str(raw).map_err(|e| ApiError::Invalid(format!("filter: {e}")))?;
        parsed
            .validate()
            .map(Some)
            .map_err(|e| ApiError::Invalid(format!("filter: {e}")))
    }
}

/// One of an image's top labels from the image model's classifier, with its probability.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Tag {
    pub label: String,
    pub score: f32,
}

fn tags(tags: Vec<super::service::Tag>) -> Vec<Tag> {
    tags.into_iter()
        .map(|t| Tag {
            label: t.label,
            score: t.score,
        })
        .collect()
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImageHit {
    pub rank: usize,
    pub image_id: String,
    pub score: f32,
    /// Where to fetch the image.
    pub url: String,
    pub captions: Vec<String>,
    /// For images without captions: their top labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// EXIF, file facts and your own fields, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<photo::PhotoInfo>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImageResults {
    pub results: Vec<ImageHit>,
    pub took_ms: f64,
    /// The projector and encoders that produced the scores.
    pub model: String,
    /// An image query's own top labels (`POST /v1/search/similar`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_tags: Vec<Tag>,
    /// With a `taken_at` order: the lowest score this query kept as relevant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cutoff: Option<f32>,
}

impl ImageResults {
    /// A service's ranked images as the page's JSON, ranked from `offset + 1`.
    pub fn new(ranked: Ranked<ImageMatch>, page: Page, started: std::time::Instant) -> Self {
        Self {
            results: ranked
                .hits
                .into_iter()
                .enumerate()
                .map(|(i, m)| ImageHit {
                    rank: page.offset + i + 1,
                    url: image_url(m.image.as_str()),
                    image_id: m.image.to_string(),
                    score: m.score,
                    captions: m.captions,
                    tags: tags(m.tags),
                    metadata: m.metadata.map(Into::into),
                })
                .collect(),
            took_ms: started.elapsed().as_secs_f64() * 1e3,
            model: ranked.model,
            query_tags: tags(ranked.query_tags),
            cutoff: ranked.cutoff,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CaptionHit {
    pub rank: usize,
    pub caption_id: String,
    pub image_id: String,
    pub text: String,
    pub score: f32,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CaptionResults {
    pub results: Vec<CaptionHit>,
    pub took_ms: f64,
    pub model: String,
    /// The query image's own top labels: words for it even when no caption matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_tags: Vec<Tag>,
}

impl CaptionResults {
    /// A service's ranked captions as the page's JSON, ranked from `offset + 1`.
    pub fn new(ranked: Ranked<CaptionMatch>, page: Page, started: std::time::Instant) -> Self {
        Self {
            results: ranked
                .hits
                .into_iter()
                .enumerate()
                .map(|(i, m)| CaptionHit {
                    rank: page.offset + i + 1,
                    caption_id: m.caption.to_string(),
                    image_id: m.caption.image.to_string(),
                    text: m.text,
                    score: m.score,
                })
                .collect(),
            took_ms: started.elapsed().as_secs_f64() * 1e3,
            model: ranked.model,
            query_tags: tags(ranked.query_tags),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImageInfo {
    pub image_id: String,
    pub captions: Vec<String>,
    /// Top labels from the image model's classifier (words for uncaptioned photos).
    pub tags: Vec<Tag>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub url: String,
    pub dataset: String,
    /// EXIF, file facts and your own fields.
    pub metadata: photo::PhotoInfo,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Created {
    pub image_id: String,
}

/// Multipart form of `POST /v1/images` (for the OpenAPI document).
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct UploadForm {
    /// JPEG, PNG or WebP bytes.
    #[schema(value_type = String, format = Binary)]
    pub image: Vec<u8>,
    /// Zero or more captions (repeat the field).
    pub caption: Vec<String>,
    /// Optional id: 1-128 characters of A-Z a-z 0-9 . _ - (default: derived from the content).
    pub id: Option<String>,
    /// Optional JSON object of your own fields (strings, numbers, booleans, dates `2024-06-01`,
    /// or lists of them; at most 64), filterable with `filter.fields`.
    pub metadata: Option<String>,
}

/// Multipart form of `POST /v1/search/image`.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct ImageQueryForm {
    #[schema(value_type = String, format = Binary)]
    pub image: Vec<u8>,
}

pub fn image_url(id: &str) -> String {
    format!("/v1/images/{id}/file")
}
