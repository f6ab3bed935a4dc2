//! Near-duplicate groups over HTTP: parse and validate, call the service, shape the answer.

use std::time::Instant;

use axum::{extract::State, Json};

use super::super::{
    api::duplicates::{DuplicateGroups, DuplicateParams},
    error::ApiError,
    input::ApiQuery,
    state::AppState,
};

#[utoipa::path(get, path = "/v1/duplicates", tag = "images", params(DuplicateParams),
    responses((status = 200, body = DuplicateGroups), (status = 422, body = super::super::error::ErrorBody), (status = 503, body = super::super::error::ErrorBody)))]
/// Groups of near-duplicate images (re-encoded, resized or lightly edited copies), found from
/// the model's image index, largest groups first, paged. Costs one index search per image.
pub async fn duplicates(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<DuplicateParams>,
) -> Result<Json<DuplicateGroups>, ApiError> {
    let started = Instant::now();
    let query = params.validate()?;
    let found = state
        .service()?
        .duplicates(
            params.model.as_deref(),
            query.threshold,
            query.limit,
            query.offset,
        )
        .await?;
    Ok(Json(DuplicateGroups::new(found, started)))
}
