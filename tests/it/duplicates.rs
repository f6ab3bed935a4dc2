//! Near-duplicates: a photo folder holding gallery photos and copies made here (re-encoded as
//! JPEG quality 40, resized to half and to a quarter) is served; `GET /v1/duplicates` groups each
//! copy with its original and leaves the distinct photos alone, pages its groups, refuses bad
//! parameters with 422, and `xmodal duplicates` prints the same groups from the same data.

use std::{collections::BTreeSet, path::Path};

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{api::Api, *};

/// Gallery photos left as they are.
const DISTINCT: [&str; 4] = ["coffee", "rocket", "horse", "pagoda"];

fn jpeg(img: &image::DynamicImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(&img.to_rgb8())
        .unwrap();
    out
}

fn write_library(root: &Path) {
    // originals as JPEG quality 95 (the gallery holds PNGs and JPEGs)
    for id in DISTINCT.iter().chain(&["chelsea", "astronaut"]) {
        let img = image::load_from_memory(&gallery_photo(id)).unwrap();
        std::fs::write(root.join(format!("{id}.jpg")), jpeg(&img, 95)).unwrap();
    }
    let cat = image::load_from_memory(&gallery_photo("chelsea")).unwrap();
    std::fs::write(root.join("chelsea-q40.jpg"), jpeg(&cat, 40)).unwrap();
    let astronaut = image::load_from_memory(&gallery_photo("astronaut")).unwrap();
    let (w, h) = (astronaut.width(), astronaut.height());
    for (name, div) in [("astronaut-half.jpg", 2), ("astronaut-quarter.jpg", 4)] {
        let small = astronaut.resize(w / div, h / div, image::imageops::FilterType::Triangle);
        std::fs::write(root.join(name), jpeg(&small, 85)).unwrap();
    }
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn copies_are_grouped_with_their_originals_and_distinct_photos_are_not() {
    let data = tempdir("duplicates-data");
    let root = tempdir("duplicates-photos");
    write_library(&root);
    let server = Server::start(&data, &["--library", root.to_str().unwrap()]);
    let api = Api::new(&server);

    let answer = api.get("/v1/duplicates").await;
    let want = BTreeSet::from([
        set(&["chelsea.jpg", "chelsea-q40.jpg"]),
        set(&[
            "astronaut.jpg",
            "astronaut-half.jpg",
            "astronaut-quarter.jpg",
        ]),
    ]);
    assert_eq!(api::duplicate_groups(&answer), want, "{answer}");
    assert_eq!(answer["total_groups"], 2);
    // the larger group first, and in each group the largest file first (the original here)
    let first = &answer["groups"][0];
    assert_eq!(first["images"][0]["image_id"], "astronaut.jpg", "{answer}");
    assert!(
        first["images"][0]["metadata"]["file_size"]
            .as_u64()
            .unwrap()
            > 0
    );
    let threshold = answer["threshold"].as_f64().unwrap();
    for g in answer["groups"].as_array().unwrap() {
        assert!(g["score"].as_f64().unwrap() >= threshold, "{g}");
    }

    // pages of groups
    let second = api.get("/v1/duplicates?limit=1&offset=1").await;
    assert_eq!(
        api::duplicate_groups(&second),
        BTreeSet::from([set(&["chelsea.jpg", "chelsea-q40.jpg"])]),
        "{second}"
    );
    assert_eq!(second["total_groups"], 2);
    // at similarity 1 nothing but identical embeddings groups: none here
    let strict = api.get("/v1/duplicates?threshold=1").await;
    assert_eq!(strict["total_groups"], 0, "{strict}");

    for bad in [
        "threshold=1.5",
        "limit=0",
        "offset=-1",
        "colour=red",
        "model=nope",
    ] {
        let r = api
            .http
            .get(api.url(&format!("/v1/duplicates?{bad}")))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::NOT_FOUND,
            "{bad}: {status} {body}"
        );
        assert!(body["error"]["message"].is_string(), "{bad}: {body}");
    }
    server.kill();

    // the command line answers from the same data directory
    let models = kit_model("minilm-l6").parent().unwrap().to_path_buf();
    let (ok, stdout, stderr) = xmodal(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--models-dir",
        models.to_str().unwrap(),
        "duplicates",
        "--library",
        root.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let printed: BTreeSet<BTreeSet<String>> = stdout
        .lines()
        .map(|l| l.split('\t').skip(1).map(String::from).collect())
        .collect();
    assert_eq!(printed, want, "{stdout}");
}
