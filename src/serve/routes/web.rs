//! The web page: one HTML file with inline script and style, embedded in the binary (no CDN).

use axum::response::Html;

const PAGE: &str = include_str!("../web/index.html");

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}
