//! A small typed client for the HTTP API: the request/answer chains tests used to spell out
//! (search and collect ids, read /metrics and pick a sample, read /ready).

use serde_json::Value;

use super::Server;

pub struct Api<'s> {
    pub http: reqwest::Client,
    server: &'s Server,
}

impl<'s> Api<'s> {
    pub fn new(server: &'s Server) -> Self {
        Self {
            http: reqwest::Client::new(),
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// `POST /v1/search/text` (any status: the JSON answer).
    pub async fn search_text(&self, query: &str, k: usize) -> Value {
        super::post_json(
            &self.http,
            self.url("/v1/search/text"),
            serde_json::json!({"query": query, "k": k}),
        )
        .await
    }

    /// The image ids a caption search ranks, best first.
    pub async fn search_ids(&self, query: &str, k: usize) -> Vec<String> {
        image_ids(&self.search_text(query, k).await)
    }

    pub async fn get(&self, path: &str) -> Value {
        super::get_json(&self.http, self.url(path)).await
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> Metrics {
        Metrics(
            self.http
                .get(self.url("/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
    }
}

/// `results[].image_id` of a search answer (panics, showing the answer, if it has none).
pub fn image_ids(answer: &Value) -> Vec<String> {
    answer["results"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|h| h["image_id"].as_str().unwrap().to_string())
        .collect()
}

/// The groups of a `/v1/duplicates` answer, each as its set of image ids.
pub fn duplicate_groups(
    answer: &Value,
) -> std::collections::BTreeSet<std::collections::BTreeSet<String>> {
    answer["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|g| {
            g["images"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["image_id"].as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

/// A `/metrics` page.
pub struct Metrics(pub String);

impl Metrics {
    /// The value of the first sample whose line starts with `series` (name plus labels).
    pub fn sample(&self, series: &str) -> f64 {
        self.0
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{series} not in /metrics"))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }
}
