//! Durability: a client adds images in a loop, the server is SIGKILLed mid-stream and restarted.
//! Every image that got a 201 is there with all its captions and searchable, nothing half-written
//! is visible, and the indexes agree with the catalog.

use std::sync::{Arc, Mutex};

use crate::common::*;
use reqwest::{multipart, Client};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempdir("serve-crash");
    let server = Server::start(&dir, &[]);
    let base = server.base.clone();
    let acked: Arc<Mutex<Vec<(String, usize)>>> = Arc::new(Mutex::new(Vec::new()));
    let (progress, mut watch) = tokio::sync::watch::channel(0usize);
    let photos = [
        "chelsea", "coffee", "rocket", "horse", "coins", "brick", "grass", "dahlia",
    ];

    // Writers keep uploading; the server dies under them after the 6th acknowledgement.
    let writer = {
        let acked = acked.clone();
        tokio::spawn(async move {
            let c = Client::new();
            for i in 0..200usize {
                let captions = 1 + i % 3;
                let mut form = multipart::Form::new()
                    .part(
                        "image",
                        multipart::Part::bytes(gallery_photo(photos[i % photos.len()])),
                    )
                    .text("id", format!("up-{i:03}"));
                for k in 0..captions {
                    form = form.text("caption", format!("upload {i} caption {k}"));
                }
                match c
                    .post(format!("{base}/v1/images"))
                    .multipart(form)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 201 => {
                        let mut list = acked.lock().unwrap();
                        list.push((format!("up-{i:03}"), captions));
                        let _ = progress.send(list.len());
                    }
                    Ok(r) => panic!("unexpected {}", r.status()),
                    Err(_) => break, // the server is gone
                }
            }
        })
    };
    eprintln!("server up at {}", server.base);
    watch.wait_for(|&n| n >= 6).await.unwrap();
    eprintln!("6 acknowledged; killing");
    server.kill();
    writer.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 6);

    eprintln!("restarting");
    let server = Server::start(&dir, &[]);
    eprintln!("restarted");
    let c = Client::new();
    for (id, captions) in &acked {
        let info: Value = c
            .get(server.url(&format!("/v1/images/{id}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            info["captions"].as_array().map(Vec::len),
            Some(*captions),
            "{id}: {info}"
        );
        assert_eq!(
            c.get(server.url(&format!("/v1/images/{id}/similar")))
                .send()
                .await
                .unwrap()
                .status(),
            200,
            "{id} not searchable"
        );
        assert_eq!(
            c.get(server.url(&format!("/v1/images/{id}/file")))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    // the index holds exactly what the catalog holds: every caption of every image found
    let ready: Value = c
        .get(server.url("/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let images = ready["images"].as_u64().unwrap() as usize;
    assert!(
        images >= acked.len() && images <= acked.len() + 1,
        "index {images}, acknowledged {}",
        acked.len()
    );
    let mut captions = 0;
    for i in 0..images {
        let r = c
            .get(server.url(&format!("/v1/images/up-{i:03}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "image {i} is in the index but not the catalog (or ids skip)"
        );
        captions += r.json::<Value>().await.unwrap()["captions"]
            .as_array()
            .unwrap()
            .len();
    }
    assert_eq!(ready["captions"].as_u64().unwrap() as usize, captions);
    // searching lists only catalog images
    let r: Value = c
        .post(server.url("/v1/search/text"))
        .json(&json!({"query": "a cat", "k": 100}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["results"].as_array().unwrap().len(), images);
}
