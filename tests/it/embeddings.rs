//! `POST /v1/embeddings` and `GET /v1/models` through OpenAI's own Python client (the `openai`
//! package, installed by scripts/ci/ensure-openai; tests/openai/embeddings_client.py), against a
//! server over the tiny CLIP fixture: one string, a list, base64, an image item whose vector
//! scores the caption exactly as search does, and refusals the client raises with our message.
//! Then, in Rust: one call's texts form one encoder batch.

use serde_json::{json, Value};

use crate::{
    clip_parity::{clip_fixture, gallery_path},
    common::{api::Api, *},
};

fn openai_python() -> String {
    std::env::var("XMODAL_OPENAI_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/xmodal-tools/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_client_embeds_texts_and_images_that_score_like_search() {
    let clip = clip_fixture("clip-tiny");
    let server = Server::start(&tempdir("embeddings"), &["--model", clip.to_str().unwrap()]);
    let client = reqwest::Client::new();
    let id = upload(
        &client,
        &server,
        "chelsea",
        &["a tabby cat"],
        Some("chelsea"),
    )
    .await;
    upload(&client, &server, "rocket", &[], Some("rocket")).await;

    let python = openai_python();
    let out = tokio::process::Command::new(&python)
        .arg(repo().join("tests/openai/embeddings_client.py"))
        .args([
            server.base.as_str(),
            "clip-tiny",
            gallery_path("chelsea").to_str().unwrap(),
            id.as_str(),
            "a cat sitting on a sofa",
        ])
        .output()
        .await
        .unwrap_or_else(|e| panic!("{python}: {e} (scripts/ci/ensure-openai installs it)"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "openai client checks failed:\n{stdout}\n{stderr}"
    );
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&seen).unwrap());
    assert_eq!(seen["models"], json!(["clip-tiny"]));

    // the three texts of one call are one batch of the text encoder
    let api = Api::new(&server);
    let before = api.metrics().await;
    let answer = post_json(
        &client,
        server.url("/v1/embeddings"),
        json!({"model": "clip-tiny", "input": ["one", "two", "three"]}),
    )
    .await;
    assert_eq!(answer["data"].as_array().unwrap().len(), 3, "{answer}");
    let after = api.metrics().await;
    let series = |m: &crate::common::api::Metrics, s: &str| {
        m.sample(&format!(
            "xmodal_encoder_batch_size_{s}{{encoder=\"text\"}}"
        ))
    };
    assert_eq!(series(&after, "count") - series(&before, "count"), 1.0);
    assert_eq!(series(&after, "sum") - series(&before, "sum"), 3.0);
    assert!(
        after
            .0
            .lines()
            .any(|l| l.starts_with("xmodal_http_requests_total")
                && l.contains("route=\"/v1/embeddings\"")
                && l.contains("status=\"200\"")),
        "per-route metrics"
    );
}
