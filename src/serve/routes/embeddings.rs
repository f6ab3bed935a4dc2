//! `POST /v1/embeddings` and `GET /v1/models` in OpenAI's shapes: parse and validate, call the
//! service, shape the JSON.

use axum::{extract::State, Json};

use super::super::{
    api::embeddings::{
        EmbeddingData, EmbeddingList, EmbeddingRequest, ModelInfo, ModelList, Usage,
    },
    error::ApiError,
    input::{ApiJson, LargeBodySlot},
    service::ServiceError,
    state::AppState,
};

#[utoipa::path(post, path = "/v1/embeddings", tag = "embeddings", request_body = EmbeddingRequest,
    responses((status = 200, body = EmbeddingList), (status = 400, body = super::super::error::ErrorBody), (status = 404, body = super::super::error::ErrorBody), (status = 413, body = super::super::error::ErrorBody), (status = 415, body = super::super::error::ErrorBody), (status = 422, body = super::super::error::ErrorBody), (status = 429, body = super::super::error::ErrorBody), (status = 503, body = super::super::error::ErrorBody)))]
/// Texts and images → their L2-normalised vectors in one space (OpenAI's embeddings API): a
/// caption's vector · an image's vector is the score caption → image search gives that image.
pub async fn embeddings(
    State(state): State<AppState>,
    _slot: LargeBodySlot,
    ApiJson(req): ApiJson<EmbeddingRequest>,
) -> Result<Json<EmbeddingList>, ApiError> {
    let model = req.model.clone();
    let (inputs, encoding) = req.validate()?;
    let service = state.service()?;
    let embedded = service
        .embed(model.as_deref(), inputs)
        .await
        .map_err(|e| match e {
            ServiceError::UnknownModel { .. } => ApiError::ModelNotFound(e.to_string()),
            other => other.into(),
        })?;
    let data = embedded
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| EmbeddingData::new(i, v.as_slice(), encoding))
        .collect();
    Ok(Json(EmbeddingList {
        object: "list".into(),
        data,
        model: embedded.model,
        usage: Usage {
            prompt_tokens: embedded.tokens,
            total_tokens: embedded.tokens,
        },
    }))
}

#[utoipa::path(get, path = "/v1/models", tag = "embeddings",
    responses((status = 200, body = ModelList), (status = 503, body = super::super::error::ErrorBody)))]
/// The searchable spaces, as OpenAI's model list: `id` is what `model` names.
pub async fn models(State(state): State<AppState>) -> Result<Json<ModelList>, ApiError> {
    let service = state.service()?;
    Ok(Json(ModelList {
        object: "list".into(),
        data: service
            .spaces()
            .map(|(id, description)| ModelInfo {
                id: id.to_string(),
                object: "model".into(),
                created: 0,
                owned_by: "xmodal".into(),
                description: description.to_string(),
            })
            .collect(),
    }))
}
