//! The OpenAPI document, generated from the handlers and their types.

use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use super::{api, error, routes};

#[derive(OpenApi)]
#[openapi(
    info(title = "xmodal", description = "Cross-modal retrieval: send a caption, get ranked images; upload an image, get ranked captions."),
    paths(
        routes::search::search_text,
        routes::search::search_image,
        routes::search::search_similar,
        routes::search::similar,
        routes::search::captions_for_image,
        routes::images::upload,
        routes::images::get_image,
        routes::images::get_file,
        routes::images::delete_image,
        routes::ops::health,
        routes::ops::ready,
        routes::ops::metrics,
    ),
    components(schemas(api::TextSearchRequest, api::ImageResults, api::ImageHit, api::Tag, api::CaptionResults, api::CaptionHit, api::ImageInfo, api::Created, api::UploadForm, api::ImageQueryForm, error::ErrorBody, error::ErrorDetail, routes::ops::Status, routes::ops::Readiness, routes::ops::FeatureSets, routes::ops::FeatureInfo)),
    modifiers(&BearerAuth),
    tags((name = "search"), (name = "images"), (name = "ops"))
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
