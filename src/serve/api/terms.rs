//! Query arithmetic as clients write it: `terms` on `/v1/search/text`, each a caption, an
//! indexed image or an uploaded image (base64) with a weight; negative weights subtract.

use base64::Engine as _;
use serde::Deserialize;
use utoipa::ToSchema;

use super::MAX_QUERY_CHARS;
use crate::{
    data::ImageId,
    serve::service::{QueryTerm, WeightedTerm},
};

pub const MAX_TERMS: usize = 8;
const MAX_WEIGHT: f64 = 10.0;

/// One term of a weighted query: exactly one of `text`, `image_id`, `image_base64`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryTermRequest {
    /// A caption.
    pub text: Option<String>,
    /// An image in the collection, by id.
    pub image_id: Option<String>,
    /// An image's bytes (JPEG, PNG or WebP), base64.
    pub image_base64: Option<String>,
    /// How much this term counts, -10..=10 and not 0; negative subtracts. Default 1.
    #[serde(default = "one")]
    #[schema(default = 1.0)]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

/// The service's terms, or why these are refused.
pub fn validate(terms: &[QueryTermRequest]) -> Result<Vec<WeightedTerm>, String> {
    if terms.is_empty() || terms.len() > MAX_TERMS {
        return Err(format!("terms: give 1 to {MAX_TERMS} terms"));
    }
    terms
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let at = |e: String| format!("terms[{i}]: {e}");
            if !(t.weight.is_finite() && t.weight != 0.0 && t.weight.abs() <= MAX_WEIGHT) {
                return Err(at(format!(
                    "weight must be a non-zero number within -{MAX_WEIGHT}..{MAX_WEIGHT}"
                )));
            }
            let term = match (&t.text, &t.image_id, &t.image_base64) {
                (Some(text), None, None) => {
                    let text: String = text.trim().chars().take(MAX_QUERY_CHARS).collect();
                    if text.is_empty() {
                        return Err(at("text must not be empty".into()));
                    }
                    QueryTerm::Caption(text)
                }
                (None, Some(id), None) => {
                    QueryTerm::Image(ImageId::new(id.trim()).map_err(|e| at(e.to_string()))?)
                }
                (None, None, Some(b64)) => QueryTerm::Upload(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64.trim())
                        .map_err(|e| at(format!("image_base64 is not base64: {e}")))?
                        .into(),
                ),
                _ => return Err(at("give exactly one of text, image_id, image_base64".into())),
            };
            Ok(WeightedTerm {
                term,
                weight: t.weight as f32,
            })
        })
        .collect()
}
