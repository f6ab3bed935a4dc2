//! `GET /v1/duplicates`: its query parameters and the groups it answers with.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{image_url, photo::PhotoInfo};
use crate::serve::{error::ApiError, service::Duplicates};

/// Groups per page at most.
pub const MAX_GROUPS: usize = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DuplicateParams {
    /// Lowest similarity (cosine in the model's space, 0..=1) at which two images count as
    /// copies; default: the measured one (README "Near-duplicates").
    #[param(minimum = 0.0, maximum = 1.0)]
    pub threshold: Option<f64>,
    /// Groups per page, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Groups to skip, 0..=10000.
    #[param(minimum = 0, maximum = 10000)]
    pub offset: Option<i64>,
    /// Which heads' space to compare in (see /ready's `models`); default: the first.
    pub model: Option<String>,
}

/// A validated request.
pub struct DuplicateQuery {
    pub threshold: Option<f32>,
    pub limit: usize,
    pub offset: usize,
}

impl DuplicateParams {
    pub fn validate(&self) -> Result<DuplicateQuery, ApiError> {
        let threshold = match self.threshold {
            Some(t) if !(0.0..=1.0).contains(&t) => {
                return Err(ApiError::Invalid(format!(
                    "threshold must be within 0..=1, got {t}"
                )))
            }
            t => t.map(|t| t as f32),
        };
        let limit = self.limit.unwrap_or(20);
        if !(1..=MAX_GROUPS as i64).contains(&limit) {
            return Err(ApiError::Invalid(format!(
                "limit must be within 1..={MAX_GROUPS}, got {limit}"
            )));
        }
        let offset = self.offset.unwrap_or(0);
        if !(0..=super::MAX_OFFSET as i64).contains(&offset) {
            return Err(ApiError::Invalid(format!(
                "offset must be within 0..={}, got {offset}",
                super::MAX_OFFSET
            )));
        }
        Ok(DuplicateQuery {
            threshold,
            limit: limit as usize,
            offset: offset as usize,
        })
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DuplicateMember {
    pub image_id: String,
    /// Where to fetch the image.
    pub url: String,
    /// Its highest similarity to another member of the group.
    pub score: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PhotoInfo>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DuplicateGroupInfo {
    /// Largest file first (most often the original).
    pub images: Vec<DuplicateMember>,
    /// The closest pair's similarity.
    pub score: f32,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DuplicateGroups {
    /// Largest groups first, then the closest.
    pub groups: Vec<DuplicateGroupInfo>,
    /// Groups on all pages.
    pub total_groups: usize,
    /// The similarity the groups were formed at.
    pub threshold: f32,
    pub model: String,
    pub took_ms: f64,
}

impl DuplicateGroups {
    pub fn new(found: Duplicates, started: std::time::Instant) -> Self {
        Self {
            groups: found
                .groups
                .into_iter()
                .map(|g| DuplicateGroupInfo {
                    score: g.score,
                    images: g
                        .images
                        .into_iter()
                        .map(|i| DuplicateMember {
                            url: image_url(i.image.as_str()),
                            image_id: i.image.as_str().to_string(),
                            score: i.score,
                            metadata: i.metadata.map(PhotoInfo::from),
                        })
                        .collect(),
                })
                .collect(),
            total_groups: found.total,
            threshold: found.threshold,
            model: found.model,
            took_ms: started.elapsed().as_secs_f64() * 1e3,
        }
    }
}
