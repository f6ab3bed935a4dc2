//! The OpenAPI document's frame (info, shared schemas, security, tags). Paths come from the router
//! itself (`serve::router`, utoipa-axum's `routes!`), so a route is declared once for both.

use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use super::{api, error, routes};

#[derive(OpenApi)]
#[openapi(
    info(title = "xmodal", description = "Cross-modal retrieval: send a caption, get ranked images; upload an image, get ranked captions."),
    components(schemas(api::TextSearchRequest, api::ImageResults, api::ImageHit, api::Tag, api::CaptionResults, api::CaptionHit, api::ImageInfo, api::Created, api::UploadForm, api::ImageQueryForm, error::ErrorBody, error::ErrorDetail, api::embeddings::EmbeddingRequest, api::embeddings::Encoding, api::embeddings::EmbeddingInput, api::embeddings::EmbeddingItem, api::embeddings::ImageItem, api::embeddings::EmbeddingList, api::embeddings::EmbeddingData, api::embeddings::Usage, api::embeddings::ModelList, api::embeddings::ModelInfo, routes::ops::Status, routes::ops::Readiness, routes::ops::FeatureSets, routes::ops::FeatureInfo)),
    modifiers(&BearerAuth),
    tags((name = "search"), (name = "images"), (name = "embeddings"), (name = "ops"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
