//! Query arithmetic: several weighted terms — captions, indexed images, uploaded images — as one
//! query, as rclip takes `"2:golden retriever" + pool.jpg - fruit` and Marqo weighs query terms.
//! Each term is projected into the space and normalised, the weighted sum (negative weights
//! subtract) normalised again, and the index searched with it like any other query.

use axum::body::Bytes;

use super::{search::ImageMatch, Ranked, ResultOrder, Service, ServiceError};
use crate::{data::ImageId, index::SearchRequest, vectors::Embedding};

/// What one term of a query is.
pub enum QueryTerm {
    Caption(String),
    /// An image already in the collection (its stored features).
    Image(ImageId),
    /// An image's encoded bytes.
    Upload(Bytes),
}

pub struct WeightedTerm {
    pub term: QueryTerm,
    pub weight: f32,
}

impl Service {
    /// Weighted terms → images, in `order`.
    pub async fn search_terms(
        &self,
        model: Option<&str>,
        terms: Vec<WeightedTerm>,
        request: SearchRequest<'_>,
        order: ResultOrder,
    ) -> Result<Ranked<ImageMatch>, ServiceError> {
        let space = self.space(model)?;
        let mut sum: Vec<f32> = Vec::new();
        for WeightedTerm { term, weight } in terms {
            let embedding = match term {
                QueryTerm::Caption(text) => space.project_text(&self.text_features(text).await?)?,
                QueryTerm::Image(id) => self.stored_image(space, &id).await?,
                QueryTerm::Upload(bytes) => {
                    space.project_image(&self.engine.encode_image(bytes).await?.features)?
                }
            };
            let v = embedding.as_slice();
            let norm = v
                .iter()
                .map(|x| x * x)
                .sum::<f32>()
                .sqrt()
                .max(f32::MIN_POSITIVE);
            if sum.is_empty() {
                sum = vec![0.0; v.len()];
            }
            for (s, x) in sum.iter_mut().zip(v) {
                *s += weight * x / norm;
            }
        }
        let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm.is_nan() || norm <= 1e-4 {
            return Err(ServiceError::Invalid(
                "the terms cancel out: their weighted sum is (nearly) zero".into(),
            ));
        }
        sum.iter_mut().for_each(|x| *x /= norm);
        self.images_in_order(space, &Embedding::new(sum), request, order)
            .await
    }
}
