//! The HTTP service as clients see it: every route of ../shared/API.md on a real server, the bad
//! inputs each get a 4xx JSON error (never a 5xx), and the server stays healthy.

use crate::common::{
    api::{image_ids, Api},
    *,
};
use reqwest::{multipart, Client, StatusCode};
use serde_json::{json, Value};

async fn expect_error(r: reqwest::Response, status: StatusCode, code: &str) {
    assert_eq!(r.status(), status, "{:?}", r.url().path());
    let body: Value = r.json().await.expect("error bodies are JSON");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

/// Send only the headers of a request announcing `length` body bytes; return status and body.
async fn raw_request(base: &str, line: &str, content_type: &str, length: usize) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("{line} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut response),
    )
    .await
    .expect("the server answered without waiting for the body")
    .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn every_route_answers_as_documented() {
    let s = Server::start(&tempdir("serve-routes"), &[]);
    let c = Client::new();
    assert_eq!(c.get(s.url("/health")).send().await.unwrap().status(), 200);
    let ready: Value = c
        .get(s.url("/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready["images"], 0,
        "a fresh data dir starts an empty, writable service"
    );
    // generic_path.rs runs this again with f16 encoders: /ready says what the features are
    if let Ok(precision) = std::env::var("XMODAL_PRECISION") {
        for side in ["image", "text"] {
            assert_eq!(ready["features"][side]["options"]["precision"], precision);
        }
    }

    let cat_id = upload(
        &c,
        &s,
        "chelsea",
        &["a close-up of a tabby cat's face", "a cat with green eyes"],
        Some("cat"),
    )
    .await;
    let coffee = upload(&c, &s, "coffee", &["a cup of coffee on a red saucer"], None).await;
    upload(
        &c,
        &s,
        "rocket",
        &["a rocket on the launch pad at night"],
        Some("rocket"),
    )
    .await;
    assert_eq!(cat_id, "cat");
    assert!(coffee.starts_with("img-"), "ids default to a content hash");

    let info: Value = c
        .get(s.url("/v1/images/cat"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(451), Some(300))
    );
    assert_eq!(info["captions"][1], "a cat with green eyes");
    let file = c.get(s.url("/v1/images/cat/file")).send().await.unwrap();
    assert_eq!(file.headers()["content-type"], "image/png");
    assert_eq!(
        file.bytes().await.unwrap().to_vec(),
        gallery_photo("chelsea")
    );
    let thumb = c
        .get(s.url("/v1/images/cat/file?size=64"))
        .send()
        .await
        .unwrap();
    assert_eq!(thumb.headers()["content-type"], "image/jpeg");
    let t = image::load_from_memory(&thumb.bytes().await.unwrap()).unwrap();
    assert_eq!((t.width(), t.height()), (64, 43));

    let r: Value = c
        .post(s.url("/v1/search/text"))
        .json(&json!({"query": "a tabby cat", "k": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["results"][0]["image_id"], "cat");
    assert_eq!(r["results"][0]["rank"], 1);
    assert_eq!(r["results"][0]["url"], "/v1/images/cat/file");
    assert_eq!(r["results"].as_array().unwrap().len(), 2);
    assert!(
        r["took_ms"].as_f64().unwrap() >= 0.0 && r["model"].as_str().unwrap().contains("zero-shot")
    );
    let page2: Value = c
        .post(s.url("/v1/search/text"))
        .json(&json!({"query": "a tabby cat", "k": 2, "offset": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page2["results"][0]["rank"], 3);
    let high: Value = c
        .post(s.url("/v1/search/text"))
        .json(&json!({"query": "a tabby cat", "min_score": 0.99}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(high["results"].as_array().unwrap().is_empty());

    // image → captions, multipart and raw
    let form =
        multipart::Form::new().part("image", multipart::Part::bytes(gallery_photo("chelsea")));
    let r: Value = c
        .post(s.url("/v1/search/image?k=3"))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["results"][0]["image_id"], "cat");
    assert!(r["results"][0]["caption_id"]
        .as_str()
        .unwrap()
        .starts_with("cat#"));
    let raw: Value = c
        .post(s.url("/v1/search/image"))
        .header("content-type", "image/png")
        .body(gallery_photo("rocket"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw["results"][0]["image_id"], "rocket");
    // the query image's own labels come with its captions (image → text without captions)
    let tags = raw["query_tags"].as_array().unwrap();
    assert_eq!(tags.len(), 5, "{raw}");
    assert!(tags
        .windows(2)
        .all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64()));

    // an upload → the most similar images in the collection
    let like: Value = c
        .post(s.url("/v1/search/similar?k=2"))
        .header("content-type", "image/png")
        .body(gallery_photo("coffee"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let like_ids: Vec<&str> = like["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["image_id"].as_str().unwrap())
        .collect();
    assert_eq!(like_ids.first().copied(), Some(coffee.as_str()), "{like}");
    assert!(!like["query_tags"].as_array().unwrap().is_empty());

    // every image has tags: its top ImageNet labels (a tabby's include a cat)
    let cat_info: Value = get_json(&c, s.url("/v1/images/cat")).await;
    let labels: Vec<&str> = cat_info["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["label"].as_str().unwrap())
        .collect();
    assert!(labels.iter().any(|l| l.contains("cat")), "{labels:?}");

    let similar: Value = c
        .get(s.url("/v1/images/cat/similar?k=5"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = similar["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["image_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(!ids.contains(&"cat"));

    // delete: gone from results at once
    assert_eq!(
        c.delete(s.url("/v1/images/cat"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    expect_error(
        c.get(s.url("/v1/images/cat")).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let r: Value = c
        .post(s.url("/v1/search/text"))
        .json(&json!({"query": "a tabby cat", "k": 10}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["image_id"] != "cat"));

    // docs, metrics, page
    let doc: Value = c
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/v1/search/text",
        "/v1/search/image",
        "/v1/images",
        "/v1/images/{id}",
        "/v1/images/{id}/file",
        "/v1/images/{id}/similar",
        "/v1/search/similar",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
    assert!(c
        .get(s.url("/docs/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains("swagger"));
    let metrics = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "xmodal_http_requests_total",
        "xmodal_http_request_duration_seconds_bucket",
        "xmodal_encoder_batch_size",
        "xmodal_encoder_seconds",
        "xmodal_queue_depth",
        "xmodal_index_size",
        "xmodal_build_info",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(c
        .get(s.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains("xmodal"));
}

#[tokio::test]
async fn bad_input_gets_a_4xx_json_error_and_never_a_5xx() {
    let s = Server::start(
        &tempdir("serve-bad"),
        &["--api-key", "s3cret", "--max-body-mb", "1"],
    );
    let c = Client::new();
    let auth = |r: reqwest::RequestBuilder| r.header("authorization", "Bearer s3cret");
    use StatusCode as S;
    let text = |body: &'static str| {
        c.post(s.url("/v1/search/text"))
            .header("content-type", "application/json")
            .body(body)
    };
    // (body, status, code): malformed JSON is 400, well-formed but invalid values 422
    for (body, status, code) in [
        ("{bad json", S::BAD_REQUEST, "malformed_request"),
        (
            r#"{"query": ""}"#,
            S::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            r#"{"query": "   "}"#,
            S::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            r#"{"query": "a", "k": 0}"#,
            S::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            r#"{"query": "a", "k": 1000}"#,
            S::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            r#"{"query": "a", "k": "ten"}"#,
            S::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            r#"{"query": "a", "offset": -1}"#,
            S::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (r#"{"k": 3}"#, S::UNPROCESSABLE_ENTITY, "invalid_request"),
    ] {
        expect_error(text(body).send().await.unwrap(), status, code).await;
    }
    expect_error(
        c.post(s.url("/v1/search/text"))
            .body(r#"{"query":"a"}"#)
            .send()
            .await
            .unwrap(),
        S::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    // an over-long caption is truncated by the tokenizer, not refused
    let long = "a very long caption ".repeat(2000);
    assert_eq!(
        c.post(s.url("/v1/search/text"))
            .json(&json!({"query": long}))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let img = |bytes: Vec<u8>| {
        c.post(s.url("/v1/search/image"))
            .header("content-type", "image/jpeg")
            .body(bytes)
    };
    let photo = gallery_photo("coffee");
    expect_error(
        img(photo[..photo.len() / 3].to_vec()).send().await.unwrap(),
        S::BAD_REQUEST,
        "malformed_request",
    )
    .await;
    expect_error(
        img(Vec::new()).send().await.unwrap(),
        S::BAD_REQUEST,
        "malformed_request",
    )
    .await;
    expect_error(
        img((0..5000u32).map(|i| (i * 7919 % 251) as u8).collect())
            .send()
            .await
            .unwrap(),
        S::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    // Over the 1 MiB limit: refused from Content-Length alone. Sent on a raw socket, because a
    // server that answers before reading a body closes the connection under a writing client.
    let (status, body) = raw_request(&s.base, "POST /v1/search/image", "image/jpeg", 2 << 20).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("payload_too_large"), "{body}");
    expect_error(
        c.post(s.url("/v1/search/image"))
            .header("content-type", "text/plain")
            .body("hello")
            .send()
            .await
            .unwrap(),
        S::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    expect_error(
        c.post(s.url("/v1/search/image?k=abc"))
            .header("content-type", "image/png")
            .body(gallery_photo("horse"))
            .send()
            .await
            .unwrap(),
        S::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    expect_error(
        c.post(s.url("/v1/search/image"))
            .multipart(multipart::Form::new().text("caption", "no image"))
            .send()
            .await
            .unwrap(),
        S::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    // fields we do not have are refused by name, not silently ignored: a client that misspells
    // the filter must not get unfiltered results it believes are filtered
    let unknown = [
        text(r#"{"query": "a photo", "filters": {"folder": "2023/"}}"#)
            .send()
            .await
            .unwrap(),
        c.post(s.url("/v1/search/image?k=3&filters=2023"))
            .header("content-type", "image/png")
            .body(gallery_photo("horse"))
            .send()
            .await
            .unwrap(),
        c.post(s.url("/v1/search/similar"))
            .multipart(
                multipart::Form::new()
                    .part("image", multipart::Part::bytes(gallery_photo("horse")))
                    .text("filter", "2023/"),
            )
            .send()
            .await
            .unwrap(),
    ];
    for r in unknown {
        assert_eq!(r.status(), S::UNPROCESSABLE_ENTITY, "{}", r.url());
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_request", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("`filter"), "{message}");
    }
    // a decompression bomb: a tiny PNG that declares 100000×100000 pixels
    let mut bomb = Vec::new();
    image::DynamicImage::new_luma8(1, 1)
        .write_to(
            &mut std::io::Cursor::new(&mut bomb),
            image::ImageFormat::Png,
        )
        .unwrap();
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let r = img(bomb).send().await.unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());

    // ids and auth
    expect_error(
        c.get(s.url("/v1/images/nope")).send().await.unwrap(),
        S::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        c.get(s.url("/v1/images/..%2F..%2Fetc%2Fpasswd/file"))
            .send()
            .await
            .unwrap(),
        S::BAD_REQUEST,
        "malformed_request",
    )
    .await;
    expect_error(
        c.get(s.url("/v1/images/.hidden")).send().await.unwrap(),
        S::BAD_REQUEST,
        "malformed_request",
    )
    .await;
    expect_error(
        c.get(s.url("/v1/images/nope/similar"))
            .send()
            .await
            .unwrap(),
        S::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        c.get(s.url("/no/such/route")).send().await.unwrap(),
        S::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        c.post(s.url("/v1/images"))
            .multipart(upload_form("horse", &["a horse"], None))
            .send()
            .await
            .unwrap(),
        S::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    expect_error(
        c.post(s.url("/v1/images"))
            .header("authorization", "Bearer wrong")
            .multipart(upload_form("horse", &["a horse"], None))
            .send()
            .await
            .unwrap(),
        S::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    expect_error(
        c.delete(s.url("/v1/images/nope")).send().await.unwrap(),
        S::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    expect_error(
        auth(c.post(s.url("/v1/images")))
            .multipart(upload_form("horse", &["a horse"], Some("../x")))
            .send()
            .await
            .unwrap(),
        S::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    expect_error(
        auth(c.post(s.url("/v1/images")))
            .multipart(upload_form("horse", &[""], None))
            .send()
            .await
            .unwrap(),
        S::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    assert_eq!(
        auth(c.post(s.url("/v1/images")))
            .multipart(upload_form("horse", &["a horse"], Some("h1")))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    expect_error(
        auth(c.post(s.url("/v1/images")))
            .multipart(upload_form("horse", &["again"], Some("h1")))
            .send()
            .await
            .unwrap(),
        S::CONFLICT,
        "already_exists",
    )
    .await;
    expect_error(
        auth(c.delete(s.url("/v1/images/nope")))
            .send()
            .await
            .unwrap(),
        S::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        c.get(s.url("/v1/images/h1/file?size=5"))
            .send()
            .await
            .unwrap(),
        S::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    // reads stay open
    assert_eq!(
        c.get(s.url("/v1/images/h1")).send().await.unwrap().status(),
        200
    );

    let metrics = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("xmodal_http_requests_total") && l.contains("status=\"5")),
        "a 5xx was served:\n{metrics}"
    );
    assert_eq!(c.get(s.url("/health")).send().await.unwrap().status(), 200);
}

/// "More like this" paged k at a time gives exactly the one-page list: no repeats, no gaps, never
/// the image itself. Upload captions are encoded as one batch; delete updates both index gauges.
#[tokio::test]
async fn similar_pages_uploads_and_deletes_keep_their_counts() {
    let dir = tempdir("serve-paging");
    let data = dir.display().to_string();
    let gallery = kit_model("demo-gallery").join("dataset.jsonl");
    let (ok, _, err) = xmodal(&[
        "--data-dir",
        &data,
        "ingest",
        "--format",
        "jsonl",
        "--dataset",
        "gallery",
        gallery.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let s = Server::start(&dir, &[]);
    let api = Api::new(&s);
    let c = &api.http;
    let ready = api.get("/ready").await;
    let n = ready["images"].as_u64().unwrap() as usize;
    assert!(n >= 10, "the gallery has {n} images");
    assert_eq!(ready["features"]["text"]["options"]["pooling"], "mean");
    assert_eq!(ready["device"], "cpu");
    assert_eq!(
        api.metrics()
            .await
            .sample("xmodal_device_info{device=\"cpu\"}"),
        1.0
    );

    let anchor = api.search_ids("a photo", 1).await[0].clone(); // any indexed image
    let whole = image_ids(
        &api.get(&format!("/v1/images/{anchor}/similar?k={}", n - 1))
            .await,
    );
    assert_eq!(whole.len(), n - 1);
    let mut paged = Vec::new();
    for offset in (0..n + 3).step_by(3) {
        let page = api
            .get(&format!("/v1/images/{anchor}/similar?k=3&offset={offset}"))
            .await;
        let ranks: Vec<u64> = page["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["rank"].as_u64().unwrap())
            .collect();
        assert_eq!(
            ranks,
            (offset as u64 + 1..=offset as u64 + ranks.len() as u64).collect::<Vec<_>>()
        );
        paged.extend(image_ids(&page));
    }
    assert_eq!(paged, whole, "pages of 3 equal the single page");
    assert!(!paged.contains(&anchor));

    // an upload's five captions go to the text encoder as one batch of five
    let before = api.metrics().await;
    let captions = [
        "a cat",
        "a tabby cat",
        "a cat's face",
        "green eyes",
        "whiskers",
    ];
    upload(c, &s, "chelsea", &captions, Some("cat-batch")).await;
    let after = api.metrics().await;
    let text = "xmodal_encoder_batch_size_count{encoder=\"text\"}";
    let text_sum = "xmodal_encoder_batch_size_sum{encoder=\"text\"}";
    assert_eq!(after.sample(text) - before.sample(text), 1.0);
    assert_eq!(after.sample(text_sum) - before.sample(text_sum), 5.0);
    let captions_gauge = "xmodal_index_size{side=\"captions\"}";
    let images_gauge = "xmodal_index_size{side=\"images\"}";
    let (caps, imgs) = (after.sample(captions_gauge), after.sample(images_gauge));

    // delete: both gauges follow
    assert_eq!(
        c.delete(s.url("/v1/images/cat-batch"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let deleted = api.metrics().await;
    assert_eq!(deleted.sample(captions_gauge), caps - 5.0);
    assert_eq!(deleted.sample(images_gauge), imgs - 1.0);
}

/// `serve --pooling` reaches the text encoder the server runs (it was accepted and ignored).
#[tokio::test]
async fn serve_uses_the_pooling_it_is_given() {
    let s = Server::start(&tempdir("serve-pooling"), &["--pooling", "cls"]);
    let ready = Api::new(&s).get("/ready").await;
    assert_eq!(ready["features"]["text"]["options"]["pooling"], "cls");
}

/// A repeated query (whitespace aside) is answered from the query cache: the text encoder runs
/// once, hits and misses are counted, the results are the same; `--query-cache-mb 0` turns it off.
#[tokio::test]
async fn repeated_queries_skip_the_text_encoder() {
    let s = Server::start(&tempdir("serve-query-cache"), &[]);
    let api = Api::new(&s);
    let encoder_runs = "xmodal_encoder_batch_size_count{encoder=\"text\"}";
    let first = api.search_text("a  tabby cat", 5).await;
    let after_first = api.metrics().await;
    let second = api.search_text(" a tabby cat ", 5).await;
    let after_second = api.metrics().await;
    assert_eq!(first["results"], second["results"]);
    assert_eq!(
        after_second.sample(encoder_runs),
        after_first.sample(encoder_runs),
        "the encoder ran for a cached query"
    );
    assert_eq!(
        after_second.sample("xmodal_query_cache_total{result=\"hit\"}"),
        1.0
    );
    assert_eq!(
        after_second.sample("xmodal_query_cache_total{result=\"miss\"}"),
        1.0
    );

    let off = Server::start(
        &tempdir("serve-query-cache-off"),
        &["--query-cache-mb", "0"],
    );
    let api = Api::new(&off);
    api.search_text("a tabby cat", 5).await;
    api.search_text("a tabby cat", 5).await;
    let metrics = api.metrics().await;
    assert_eq!(metrics.sample(encoder_runs), 2.0);
    assert!(!metrics.contains("xmodal_query_cache_total"));
}
