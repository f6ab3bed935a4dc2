//! What is known about a photo, and searching by it: EXIF written by Pillow
//! (scripts/fixtures/make_exif_photos.py) read on the way in (folder libraries and uploads), the
//! user's own fields on uploads, returned on image details and results, and filters on every
//! search route on both backends (SQLite + in-process HNSW; Postgres + pgvector). Each filter's
//! answer is compared as a set with what the fixture's facts say it must keep.

use std::{collections::BTreeSet, path::Path};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{api::Api, postgres::Postgres, *};

const PHOTOS: [&str; 7] = [
    "2024/summer/beach.jpg",
    "2024/summer/dog.jpg",
    "2024/autumn/leaves.jpg",
    "2023/winter/snow.jpg",
    "2023/city.jpg",
    "2024-old/south.jpg",
    "plain.png",
];

/// How a test names each fixture photo's image id (a library's ids, or the upload ids).
struct Ids(Box<dyn Fn(&str) -> String>);

impl Ids {
    fn of(&self, short: &[&str]) -> BTreeSet<String> {
        short.iter().map(|s| self.one(s)).collect()
    }

    /// `beach` → the id of 2024/summer/beach.jpg; `u1`, `u2` are uploads without EXIF.
    fn one(&self, short: &str) -> String {
        match PHOTOS.iter().find(|p| file_stem(p) == short) {
            Some(rel) => (self.0)(rel),
            None => short.to_string(),
        }
    }
}

fn file_stem(rel: &str) -> &str {
    let name = rel.rsplit('/').next().unwrap();
    name.split('.').next().unwrap()
}

async fn search(api: &Api<'_>, filter: Value) -> (StatusCode, Value) {
    let r = api
        .http
        .post(api.url("/v1/search/text"))
        .json(&json!({"query": "a photo", "k": 100, "filter": filter}))
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

fn ids(answer: &Value) -> BTreeSet<String> {
    api::image_ids(answer).into_iter().collect()
}

/// Upload two photos without EXIF but with the user's own fields and a caption each.
async fn upload_with_fields(api: &Api<'_>) {
    for (id, seed, fields) in [
        (
            "u1",
            1,
            json!({"rating": 5, "people": ["Ann", "Bo"], "event": "2024-06-01"}),
        ),
        (
            "u2",
            2,
            json!({"rating": 3, "people": "Cy", "favourite": true}),
        ),
    ] {
        let form = reqwest::multipart::Form::new()
            .part(
                "image",
                reqwest::multipart::Part::bytes(noise_png(seed, 128)).file_name("x.png"),
            )
            .text("caption", format!("caption of {id}"))
            .text("id", id)
            .text("metadata", fields.to_string());
        let r = api
            .http
            .post(api.url("/v1/images"))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
    }
    let r = api
        .http
        .post(api.url("/v1/images"))
        .multipart(
            reqwest::multipart::Form::new()
                .part(
                    "image",
                    reqwest::multipart::Part::bytes(noise_png(3, 64)).file_name("x.png"),
                )
                .text("metadata", r#"{"bad name": 1}"#),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bad name"),
        "{body}"
    );
}

/// Filters whose answer does not depend on folders (uploads have none), on either backend.
async fn check_filters(api: &Api<'_>, id: &Ids) {
    let cases = [
        // wall-clock dates: the camera's own calendar
        (
            json!({"taken_at": {"gte": "2024-01-01", "lt": "2025-01-01"}}),
            vec!["beach", "dog", "leaves", "south"],
        ),
        (
            json!({"taken_at": {"gte": "2024-10-01", "lt": "2024-10-21"}}),
            vec!["leaves"],
        ),
        // instants: 2024-10-20 23:30 at -04:00 is the 21st in UTC
        (
            json!({"taken_at": {"gte": "2024-10-01T00:00:00Z", "lt": "2024-10-21T00:00:00Z"}}),
            vec![],
        ),
        (
            json!({"taken_at": {"gte": "2024-10-21T03:00:00Z"}}),
            vec!["leaves"],
        ),
        (json!({"camera_make": "canon"}), vec!["beach", "leaves"]),
        (
            json!({"camera_model": ["ilce-7m3", "Pixel 7"]}),
            vec!["snow", "city", "dog"],
        ),
        (
            json!({"near": {"lat": 48.85, "lon": 2.35, "km": 50}}),
            vec!["dog"],
        ),
        (
            json!({"within": {"south": 35, "west": -10, "north": 60, "east": 20}}),
            vec!["beach", "dog"],
        ),
        // across the antimeridian: Tokyo and Sydney, not New York
        (
            json!({"within": {"south": -50, "west": 100, "north": 50, "east": -100}}),
            vec!["snow", "south"],
        ),
        (
            json!({"has_location": false}),
            vec!["city", "plain", "u1", "u2"],
        ),
        (
            json!({"not": {"camera_make": "Canon"}}),
            vec!["dog", "snow", "city", "south", "plain", "u1", "u2"],
        ),
        (
            json!({"or": [{"camera_make": "apple"}, {"near": {"lat": 35.68, "lon": 139.65, "km": 10}}]}),
            vec!["south", "snow"],
        ),
        // displayed width: the dog is rotated by its EXIF orientation (96×64 stored)
        (json!({"width": {"lt": 90}}), vec!["dog"]),
        (json!({"fields": {"rating": {"gte": 4}}}), vec!["u1"]),
        (json!({"fields": {"people": "Bo"}}), vec!["u1"]),
        (
            json!({"fields": {"people": {"any": ["Cy", "Zed"]}}}),
            vec!["u2"],
        ),
        (
            json!({"fields": {"event": {"gte": "2024-05-01", "lt": "2024-07-01"}}}),
            vec!["u1"],
        ),
        (
            json!({"fields": {"favourite": true}, "has_taken_at": false}),
            vec!["u2"],
        ),
    ];
    for (filter, want) in cases {
        let (status, answer) = search(api, filter.clone()).await;
        assert_eq!(status, StatusCode::OK, "{filter}: {answer}");
        assert_eq!(ids(&answer), id.of(&want), "{filter}");
    }

    // "more like this" by id: filtered, and never the image itself
    let beach = id.one("beach");
    let similar = api
        .get(&format!(
            "/v1/images/{beach}/similar?k=50&filter={}",
            urlencode(r#"{"camera_make":"canon"}"#)
        ))
        .await;
    assert_eq!(ids(&similar), id.of(&["leaves"]), "{similar}");
    // image → captions keeps the captions of images the filter keeps
    let captions = api
        .get(&format!(
            "/v1/images/{beach}/captions?k=50&filter={}",
            urlencode(r#"{"fields":{"rating":{"lte":3}}}"#)
        ))
        .await;
    let owners: BTreeSet<&str> = captions["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["image_id"].as_str().unwrap())
        .collect();
    assert_eq!(owners, BTreeSet::from(["u2"]), "{captions}");

    // what was read is returned on details and on results
    let details = api.get(&format!("/v1/images/{beach}")).await;
    let m = &details["metadata"];
    assert_eq!(m["taken_at"], "2024-07-14T16:03:11+02:00", "{details}");
    assert_eq!(m["camera_model"], "Canon EOS R5");
    assert!(
        (m["location"]["lat"].as_f64().unwrap() - 43.695).abs() < 1e-4,
        "{details}"
    );
    let u1 = api.get("/v1/images/u1").await;
    assert_eq!(
        u1["metadata"]["fields"],
        json!({"event": "2024-06-01", "people": ["Ann", "Bo"], "rating": 5}),
        "{u1}"
    );
    let (_, answer) = search(api, json!({"camera_make": "google"})).await;
    assert_eq!(
        answer["results"][0]["metadata"]["orientation"], 6,
        "{answer}"
    );

    // bad filters: 422 with the reason, never a 500
    for (filter, reason) in [
        (json!({"colour": "red"}), "colour"),
        (json!({"folder": 3}), "invalid type"),
        (
            json!({"taken_at": {"gte": "2024-06-01", "lt": "2024-01-01"}}),
            "empty",
        ),
        (json!({"taken_at": {"gte": "June"}}), "not a date"),
        (
            json!({"taken_at": {"gte": "2024-01-01", "lt": "2024-06-01T00:00:00Z"}}),
            "offset",
        ),
        (json!({"width": {"gt": 5, "gte": 10}}), "not both"),
        (
            json!({"within": {"south": 50, "west": 0, "north": 10, "east": 1}}),
            "north",
        ),
        (json!({"near": {"lat": 0, "lon": 0, "km": -1}}), "km"),
        (json!({"fields": {"bad name": 1}}), "field names"),
        (
            json!({"fields": {"rating": {"gte": 1, "lt": "x"}}}),
            "all numbers",
        ),
        (json!({"or": []}), "at least one"),
    ] {
        let (status, answer) = search(api, filter.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{filter}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{filter}: {message}");
    }
    let bad = api
        .http
        .get(api.url(&format!("/v1/images/{beach}/similar?filter=not-json")))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// `order: taken_at`: the candidates scoring at least the answer's cut-off, newest first with the
/// undated last; `taken_at_asc` the same set oldest first; a filter still applies.
async fn check_date_order(api: &Api<'_>) {
    let ask = |body: Value| async move {
        let r = api
            .http
            .post(api.url("/v1/search/text"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.unwrap()
    };
    let by_relevance = ask(json!({"query": "a photo", "k": 100})).await;
    let newest = ask(json!({"query": "a photo", "k": 100, "order": "taken_at"})).await;
    let cutoff = newest["cutoff"]
        .as_f64()
        .expect("a date order answers its cut-off");
    let relevant: BTreeSet<String> = by_relevance["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["score"].as_f64().unwrap() >= cutoff)
        .map(|h| h["image_id"].as_str().unwrap().to_string())
        .collect();
    assert!(!relevant.is_empty());
    assert_eq!(ids(&newest), relevant, "{newest}");
    let taken = |answer: &Value| -> Vec<Option<String>> {
        answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["metadata"]["taken_at"].as_str().map(String::from))
            .collect()
    };
    let instants = |answer: &Value| -> Vec<Option<i64>> {
        taken(answer)
            .into_iter()
            .map(|t| t.map(|t| instant(&t)))
            .collect()
    };
    let dates = instants(&newest);
    let dated: Vec<i64> = dates.iter().flatten().copied().collect();
    assert!(dated.windows(2).all(|w| w[0] >= w[1]), "{newest}");
    // undated after every dated one
    let first_undated = dates
        .iter()
        .position(Option::is_none)
        .unwrap_or(dates.len());
    assert!(
        dates[first_undated..].iter().all(Option::is_none),
        "{newest}"
    );
    let oldest = ask(json!({"query": "a photo", "k": 100, "order": "taken_at_asc"})).await;
    assert_eq!(ids(&oldest), relevant);
    let dated: Vec<i64> = instants(&oldest).into_iter().flatten().collect();
    assert!(dated.windows(2).all(|w| w[0] <= w[1]), "{oldest}");
    // a filter narrows the kept set; a page of it is its slice
    let filtered = ask(json!({"query": "a photo", "k": 100, "order": "taken_at",
        "filter": {"has_taken_at": true}}))
    .await;
    assert!(taken(&filtered).iter().all(Option::is_some), "{filtered}");
    let page = ask(json!({"query": "a photo", "k": 1, "offset": 1, "order": "taken_at"})).await;
    if newest["results"].as_array().unwrap().len() > 1 {
        assert_eq!(
            page["results"][0]["image_id"],
            newest["results"][1]["image_id"]
        );
    }
    let (status, _) = {
        let r = api
            .http
            .post(api.url("/v1/search/text"))
            .json(&json!({"query": "a photo", "order": "date"}))
            .send()
            .await
            .unwrap();
        (r.status(), ())
    };
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// Seconds since the epoch of an RFC 3339 time with or without an offset (none: read as UTC,
/// as the service orders a wall clock without a zone).
fn instant(t: &str) -> i64 {
    if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        return ts.as_second();
    }
    format!("{t}Z")
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_second()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn copy_fixture_photos(root: &Path) {
    for rel in PHOTOS {
        let to = root.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(fixture(&format!("exif/{rel}")), to).unwrap();
    }
}

#[tokio::test]
async fn a_photo_library_is_filtered_by_exif_folders_and_fields() {
    let data = tempdir("filters-data");
    let root = tempdir("filters-photos");
    copy_fixture_photos(&root);
    let server = Server::start(&data, &["--library", root.to_str().unwrap()]);
    let api = Api::new(&server);
    upload_with_fields(&api).await;
    let library = Ids(Box::new(|rel| {
        xmodal::library::scan::id_for(rel).unwrap().to_string()
    }));
    check_filters(&api, &library).await;
    check_date_order(&api).await;

    // folders: a folder and everything below it, not its look-alike sibling "2024-old"
    for (filter, want) in [
        (json!({"folder": "2024"}), vec!["beach", "dog", "leaves"]),
        (json!({"folder": "/2024/summer/"}), vec!["beach", "dog"]),
        (
            json!({"folder": "2023", "not": {"folder": "2023/winter"}}),
            vec!["city"],
        ),
    ] {
        let (status, answer) = search(&api, filter.clone()).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(ids(&answer), library.of(&want), "{filter}");
    }
    let details = api.get(&format!("/v1/images/{}", library.one("dog"))).await;
    assert_eq!(details["metadata"]["folder"], "2024/summer", "{details}");
    assert_eq!(details["metadata"]["file_name"], "dog.jpg");

    // a deleted image takes its metadata with it
    let r = api
        .http
        .delete(api.url("/v1/images/u2"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let (_, answer) = search(&api, json!({"fields": {"people": "Cy"}})).await;
    assert!(ids(&answer).is_empty(), "{answer}");
    server.kill();

    // a rescan of unchanged files keeps what was read
    let again = Server::start(&data, &["--library", root.to_str().unwrap()]);
    let api = Api::new(&again);
    let (_, answer) = search(&api, json!({"camera_make": "canon"})).await;
    assert_eq!(ids(&answer), library.of(&["beach", "leaves"]));
}

#[tokio::test]
async fn uploads_are_filtered_on_postgres_as_on_sqlite() {
    let pg = Postgres::start("filters");
    let url = pg.url();
    let data = tempdir("filters-pg");
    let server = Server::start(
        &data,
        &["--database", url.as_str(), "--db-timeout-ms", "1000"],
    );
    let api = Api::new(&server);
    // the photo without EXIF first: a NULL position bound before a real one once broke the
    // prepared INSERT on Postgres (sqlx's Any typed the NULL float as float4)
    for rel in PHOTOS.iter().rev() {
        let form = reqwest::multipart::Form::new()
            .part(
                "image",
                reqwest::multipart::Part::bytes(
                    std::fs::read(fixture(&format!("exif/{rel}"))).unwrap(),
                )
                .file_name("x"),
            )
            .text("id", file_stem(rel).to_string());
        let r = api
            .http
            .post(api.url("/v1/images"))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{rel}");
    }
    upload_with_fields(&api).await;
    check_filters(&api, &Ids(Box::new(|rel| file_stem(rel).to_string()))).await;
    check_date_order(&api).await;

    // near-duplicates from pgvector's index: the same photo under a second id groups with the
    // first at any threshold (identical embeddings), and nothing else joins it at 0.9999
    let form = reqwest::multipart::Form::new()
        .part(
            "image",
            reqwest::multipart::Part::bytes(
                std::fs::read(fixture("exif/2024/summer/beach.jpg")).unwrap(),
            )
            .file_name("x"),
        )
        .text("id", "beach-again");
    let r = api
        .http
        .post(api.url("/v1/images"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let found = api.get("/v1/duplicates?threshold=0.9999&limit=100").await;
    let with_beach: Vec<BTreeSet<String>> = api::duplicate_groups(&found)
        .into_iter()
        .filter(|g| g.contains("beach"))
        .collect();
    assert_eq!(
        with_beach,
        vec![BTreeSet::from([
            "beach".to_string(),
            "beach-again".to_string()
        ])],
        "{found}"
    );
}
