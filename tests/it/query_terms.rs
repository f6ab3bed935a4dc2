//! Query arithmetic on `/v1/search/text`: weighted captions, indexed images and uploaded images
//! as one query. The combined query's scores must be the weighted sum of the single terms'
//! scores up to one normalising factor (the same for every image), a subtracted image must fall,
//! an uploaded image must equal the same image by id, and bad terms answer 422.

use std::collections::HashMap;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{api::Api, *};

async fn post(api: &Api<'_>, body: Value) -> (StatusCode, Value) {
    let r = api
        .http
        .post(api.url("/v1/search/text"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

/// image id → score, for every image (k covers the collection).
async fn scores(api: &Api<'_>, terms: Value) -> HashMap<String, f64> {
    let (status, answer) = post(api, json!({"terms": terms, "k": 20})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["image_id"].as_str().unwrap().to_string(),
                r["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn weighted_terms_combine_captions_and_images() {
    let server = Server::start(&tempdir("terms"), &[]);
    let api = Api::new(&server);
    let photos = ["chelsea", "coffee", "rocket", "horse", "astronaut"];
    for photo in photos {
        upload(
            &api.http,
            &server,
            photo,
            &[&format!("a photo called {photo}")],
            Some(photo),
        )
        .await;
    }

    // one caption as a term is the caption query
    let (_, plain) = post(&api, json!({"query": "a tabby cat", "k": 20})).await;
    let as_term = scores(&api, json!([{"text": "a tabby cat"}])).await;
    for r in plain["results"].as_array().unwrap() {
        let id = r["image_id"].as_str().unwrap();
        assert!(
            (r["score"].as_f64().unwrap() - as_term[id]).abs() < 1e-5,
            "{id}"
        );
    }

    // caption + image: every image's score is (s_caption + s_image) / |a + b|, one factor for all
    let cat = scores(&api, json!([{"text": "a tabby cat"}])).await;
    let rocket = scores(&api, json!([{"image_id": "rocket"}])).await;
    let both = scores(
        &api,
        json!([{"text": "a tabby cat"}, {"image_id": "rocket"}]),
    )
    .await;
    let factors: Vec<f64> = photos
        .iter()
        .map(|p| both[*p] / (cat[*p] + rocket[*p]))
        .collect();
    for f in &factors {
        assert!(
            (f - factors[0]).abs() < 1e-3 * factors[0].abs(),
            "{factors:?}"
        );
    }
    assert!(factors[0] > 0.5 && factors[0] <= 1.0 + 1e-4, "{factors:?}");

    // weights scale terms: 3·cat − rocket ranks the rocket last
    let (_, minus) = post(
        &api,
        json!({"terms": [{"text": "a tabby cat", "weight": 3}, {"image_id": "rocket", "weight": -1}], "k": 20}),
    )
    .await;
    let ranked: Vec<String> = api::image_ids(&minus);
    assert_eq!(ranked.last().unwrap(), "rocket", "{ranked:?}");
    assert_eq!(ranked[0], "chelsea", "{ranked:?}");

    // an uploaded image is the same image by id
    let bytes = base64::engine::general_purpose::STANDARD.encode(gallery_photo("coffee"));
    let uploaded = scores(&api, json!([{"image_base64": bytes}])).await;
    let by_id = scores(&api, json!([{"image_id": "coffee"}])).await;
    for p in photos {
        assert!(
            (uploaded[p] - by_id[p]).abs() < 1e-4,
            "{p}: {} vs {}",
            uploaded[p],
            by_id[p]
        );
    }

    // and a filter still applies
    let (_, filtered) = post(
        &api,
        json!({"terms": [{"text": "a tabby cat"}], "filter": {"has_location": true}}),
    )
    .await;
    assert_eq!(
        filtered["results"].as_array().unwrap().len(),
        0,
        "{filtered}"
    );

    for (body, status, reason) in [
        (
            json!({"query": "a cat", "terms": [{"text": "a cat"}]}),
            422,
            "one of them",
        ),
        (json!({"k": 3}), 422, "one of them"),
        (json!({"terms": []}), 422, "1 to 8"),
        (
            json!({"terms": [{"text": "a cat", "weight": 0}]}),
            422,
            "weight",
        ),
        (
            json!({"terms": [{"text": "a cat", "image_id": "coffee"}]}),
            422,
            "exactly one",
        ),
        (json!({"terms": [{"image_base64": "%%%"}]}), 422, "base64"),
        (
            json!({"terms": [{"text": "a cat"}, {"text": "a cat", "weight": -1}]}),
            422,
            "cancel out",
        ),
        (json!({"terms": [{"image_id": "nope"}]}), 404, "nope"),
        (
            json!({"terms": vec![json!({"text": "x"}); 9]}),
            422,
            "1 to 8",
        ),
    ] {
        let (got, answer) = post(&api, body.clone()).await;
        assert_eq!(got.as_u16(), status, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{body}: {message}");
    }
}
