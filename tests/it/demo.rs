//! README's first command: `xmodal demo` on a fresh data directory reaches ready and answers a
//! real query; a second start reuses everything (kit, gallery, features, heads, indexes).

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use crate::common::*;
use serde_json::{json, Value};

/// Run the demo until it is ready; returns (base url, start-up seconds, stdout so far, child).
fn start_demo(data: &std::path::Path) -> (String, f64, String, std::process::Child) {
    let models = kit_model("minilm-l6").parent().unwrap().to_path_buf();
    let mut child = Command::new(env!("CARGO_BIN_EXE_xmodal"))
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "--models-dir",
            models.to_str().unwrap(),
            "demo",
            "--addr",
            "127.0.0.1:0",
            "--synth-images",
            "60",
            "--epochs",
            "2",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    let mut base = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.strip_prefix("xmodal listening on ") {
            base = rest.trim_end_matches('/').to_string();
        }
        if let Some(rest) = line.split("start-up ").nth(1) {
            let secs: f64 = rest
                .trim_end_matches(')')
                .trim_end_matches('s')
                .parse()
                .unwrap();
            return (base, secs, seen, child);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("demo exited before ready:\n{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_starts_from_nothing_and_restarts_reusing_everything() {
    let data = tempdir("demo");
    let (base, first, out, mut child) = start_demo(&data);
    assert!(out.contains("==> training heads"), "{out}");
    let r: Value = reqwest::Client::new()
        .post(format!("{base}/v1/search/text"))
        .json(&json!({"query": "a cup of coffee", "k": 3}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["results"][0]["image_id"], "coffee", "{r}");
    let ready: Value = reqwest::get(format!("{base}/ready"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready["images"], 45,
        "the demo serves the gallery of real photos"
    );
    // both heads are served and can be chosen per request
    assert_eq!(ready["models"], json!(["zero-shot", "synth-hardest"]));
    let client = reqwest::Client::new();
    let trained: Value = client
        .post(format!("{base}/v1/search/text"))
        .json(&json!({"query": "a red circle", "k": 3, "model": "synth-hardest"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(trained["results"].as_array().unwrap().len(), 3);
    assert!(
        trained["model"]
            .as_str()
            .unwrap()
            .starts_with("synth-hardest"),
        "{trained}"
    );
    let unknown = client
        .post(format!("{base}/v1/search/text"))
        .json(&json!({"query": "a cat", "model": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 422);
    child.kill().unwrap();
    child.wait().unwrap();

    let (base, second, out, mut child) = start_demo(&data);
    assert!(
        out.contains("reusing heads/synth-hardest") && out.contains("unchanged 45"),
        "{out}"
    );
    assert!(
        !out.contains("==> features"),
        "features were recomputed:\n{out}"
    );
    let r: Value = reqwest::Client::new()
        .post(format!("{base}/v1/search/text"))
        .json(&json!({"query": "a rocket at night", "k": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["results"][0]["image_id"], "rocket", "{r}");
    eprintln!("demo start-up: first {first:.1}s, second {second:.1}s");
    assert!(
        second < first,
        "second start ({second:.1}s) should reuse everything and beat the first ({first:.1}s)"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
