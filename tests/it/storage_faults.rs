//! A full disk, on a real small filesystem: the data directory is a tmpfs of a few MiB (mounting
//! needs root, which CI has; elsewhere the test says why it skips). Uploads fill it: every answer
//! is a 201 or a 507 `insufficient_storage` (never a 500), nothing half-written stays behind,
//! reads and searches go on, /ready says `writable: false`, /metrics counts it; after kill -9 and
//! a restart on the still-full disk every 201 is there; when space is freed uploads succeed again
//! with no restart.

use std::{path::Path, process::Command};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    clip_parity::clip_fixture,
    common::{api::Api, *},
};

/// A tmpfs mounted at `dir`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        assert!(Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Every file under `dir` (recursively).
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let p = e.path();
            if p.is_dir() {
                files(&p)
            } else {
                vec![p]
            }
        })
        .collect()
}

async fn upload_noise(c: &reqwest::Client, s: &Server, i: u64) -> (StatusCode, Value) {
    let form = reqwest::multipart::Form::new()
        .part(
            "image",
            reqwest::multipart::Part::bytes(noise_png(i, 256)).file_name("n.png"),
        )
        .text("caption", format!("noise picture number {i}"))
        .text("id", format!("n-{i:03}"));
    let r = c
        .post(s.url("/v1/images"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_keeps_every_201_and_recovers_when_space_is_freed() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs as the data directory needs root (CI runs as root)");
        return;
    }
    let dir = tempdir("full-disk");
    let Some(fs) = Tmpfs::mount(&dir, "6m") else {
        panic!("mount -t tmpfs failed as root");
    };
    let clip = clip_fixture("clip-tiny");
    let args = ["--model", clip.to_str().unwrap()];
    let server = Server::start(&dir, &args);
    let c = reqwest::Client::new();

    // fill it: each upload is ~200 KB of file plus its catalog rows
    let (mut acked, mut refused) = (Vec::new(), 0);
    let mut refusal = Value::Null;
    for i in 0..200u64 {
        let (status, body) = upload_noise(&c, &server, i).await;
        match status {
            StatusCode::CREATED => acked.push(format!("n-{i:03}")),
            StatusCode::INSUFFICIENT_STORAGE => {
                refused += 1;
                refusal = body;
                if refused >= 3 {
                    break;
                }
            }
            other => panic!("upload {i}: {other} {body}"),
        }
    }
    eprintln!("{} acknowledged, then 507: {refusal}", acked.len());
    assert!(
        acked.len() >= 5 && refused == 3,
        "{} / {refused}",
        acked.len()
    );
    assert_eq!(refusal["error"]["code"], "insufficient_storage");
    let message = refusal["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("space") && message.contains(dir.to_str().unwrap()),
        "names what and where: {message}"
    );

    // reads and searches go on; readiness and metrics say it
    let ready = get_json(&c, server.url("/ready")).await;
    assert_eq!(ready["writable"], false, "{ready}");
    let api = Api::new(&server);
    let hits = api.search_text("noise picture", 5).await;
    assert_eq!(hits["results"].as_array().unwrap().len(), 5, "{hits}");
    let metrics = api.metrics().await;
    for line in metrics.0.lines().filter(|l| {
        l.starts_with("xmodal_storage_errors_total") || l.starts_with("xmodal_data_dir_free_bytes")
    }) {
        eprintln!("{line}");
    }
    assert!(
        metrics
            .0
            .lines()
            .any(|l| l.starts_with("xmodal_storage_errors_total")),
        "{}",
        metrics.0
    );
    assert!(metrics.sample("xmodal_data_dir_free_bytes") >= 0.0);

    // nothing half-written: one stored file per acknowledged upload, no temporaries
    let stored: Vec<_> = files(&dir.join("images"));
    assert_eq!(stored.len(), acked.len(), "{stored:?}");
    assert!(files(&dir).iter().all(|p| !p
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with(".xmodal-tmp")));

    // kill -9 and restart on the still-full disk: every 201 is there and searchable
    server.kill();
    let server = Server::start(&dir, &args);
    for id in &acked {
        let r = c
            .get(server.url(&format!("/v1/images/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{id} after restart");
    }
    let answer = post_json(
        &c,
        server.url("/v1/search/text"),
        json!({"query": "noise picture", "k": 100}),
    )
    .await;
    assert_eq!(
        answer["results"].as_array().unwrap().len(),
        acked.len(),
        "{answer}"
    );

    // space freed: uploads succeed again, no restart
    fs.resize("64m");
    let (status, body) = upload_noise(&c, &server, 999).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let ready = get_json(&c, server.url("/ready")).await;
    assert_eq!(ready["writable"], true, "{ready}");
    drop(server);
}
