//! Helpers shared by integration tests.
#![allow(dead_code)]

pub mod api;
pub mod postgres;

use std::path::PathBuf;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A model from the kit. Tests that need real weights fail (not skip) without it: CI fetches the
/// kit first, and a silently skipped parity test would prove nothing.
pub fn kit_model(name: &str) -> PathBuf {
    let root = std::env::var_os("XMODAL_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("models"));
    let dir = root.join(name);
    assert!(
        dir.join("xmodal.json").exists(),
        "{} missing: run `xmodal models fetch` (or scripts/test) first",
        dir.display()
    );
    dir
}

pub fn fixture(rel: &str) -> PathBuf {
    repo().join("tests/fixtures").join(rel)
}

pub fn read_json(rel: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(rel)).unwrap()).unwrap()
}

pub fn matrix(v: &serde_json::Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

/// A JSON array of arrays of non-negative integers (token ids).
pub fn u32_rows(v: &serde_json::Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

/// A JSON array of strings.
pub fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Mean and largest absolute difference of two images' 8-bit channel values (same size).
pub fn pixel_diff(ours: &image::RgbImage, theirs: &image::RgbImage) -> (f32, f32) {
    assert_eq!(ours.dimensions(), theirs.dimensions());
    let diffs: Vec<f32> = ours
        .as_raw()
        .iter()
        .zip(theirs.as_raw())
        .map(|(a, b)| (*a as f32 - *b as f32).abs())
        .collect();
    let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
    (mean, diffs.iter().copied().fold(0.0, f32::max))
}

/// Whether the tests run as root (mounting a tmpfs, running Postgres as another user).
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A PNG of noise, distinct per seed and incompressible (each upload takes its size on disk).
pub fn noise_png(seed: u64, side: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let img = image::RgbImage::from_fn(side, side, |_, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let b = state.to_le_bytes();
        image::Rgb([b[0], b[1], b[2]])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Largest absolute difference between two equally-shaped matrices.
pub fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len(), "row count");
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len(), "row width");
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

/// The smallest cosine similarity between matching rows of `a` and `b`.
pub fn min_row_cosine(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len(), "row counts differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let dot: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            let norm = |v: &[f32]| v.iter().map(|p| p * p).sum::<f32>().sqrt();
            dot / (norm(x) * norm(y)).max(f32::MIN_POSITIVE)
        })
        .fold(f32::INFINITY, f32::min)
}

/// `ours` against the reference's rows: (min row cosine, max |diff|), printed under `label`.
pub fn compare_rows(label: &str, ours: &[Vec<f32>], theirs: &[Vec<f32>]) -> (f32, f32) {
    let (cos, diff) = (min_row_cosine(ours, theirs), max_abs_diff(ours, theirs));
    eprintln!(
        "{label}: min cosine {cos:.7}, max |diff| {diff:.2e} (largest |value| {:.3}) over {} rows",
        max_abs(theirs),
        theirs.len()
    );
    (cos, diff)
}

/// The demo gallery's photos `ids` through `image`, from their files (our decoder and resize).
pub fn encode_gallery_files(image: &xmodal::encode::ImageEncoder, ids: &[String]) -> Vec<Vec<f32>> {
    let photos: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| std::fs::read(crate::clip_parity::gallery_path(id)).unwrap())
        .collect();
    let bytes: Vec<&[u8]> = photos.iter().map(Vec::as_slice).collect();
    image.encode_bytes(&bytes).unwrap().to_vec2().unwrap()
}

pub fn max_abs(a: &[Vec<f32>]) -> f32 {
    a.iter().flatten().fold(0.0f32, |m, x| m.max(x.abs()))
}

/// A fresh, empty directory for one test (named by tag and process, so parallel tests differ).
pub fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xmodal-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run the xmodal binary; returns (success, stdout, stderr).
pub fn xmodal(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xmodal"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `xmodal embed …` with extra environment: one embedding per JSON line (asserting success).
pub fn embeddings(args: &[&str], env: &[(&str, &str)]) -> Vec<Vec<f64>> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xmodal"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

/// A real `xmodal serve` on an ephemeral port, killed on drop.
pub struct Server {
    pub child: std::process::Child,
    pub base: String,
    pub data_dir: PathBuf,
}

impl Server {
    /// Start and wait until it prints that it is ready (no sleeping: we read its stdout).
    pub fn start(data_dir: &std::path::Path, extra: &[&str]) -> Server {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// Like [`Server::start`], with extra environment variables.
    pub fn start_with_env(
        data_dir: &std::path::Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        use std::io::BufRead;
        let models = kit_model("minilm-l6").parent().unwrap().to_path_buf();
        let mut args: Vec<String> = vec![
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--models-dir".into(),
            models.display().to_string(),
            "serve".into(),
            "--addr".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_xmodal"))
            .args(&args)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut base = None;
        for line in stdout.lines() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("xmodal listening on ") {
                base = Some(rest.trim_end_matches('/').to_string());
            }
            if line.starts_with("xmodal is ready") {
                break;
            }
        }
        let base = base.expect("server printed its address");
        Server {
            child,
            base,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// Start without waiting for readiness (it may wait on a database): returns once it
    /// listens; its stderr goes to `stderr`.
    pub fn spawn(data_dir: &std::path::Path, extra: &[&str], stderr: &std::path::Path) -> Server {
        use std::io::BufRead;
        let models = kit_model("minilm-l6").parent().unwrap().to_path_buf();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_xmodal"))
            .args(["--data-dir", data_dir.to_str().unwrap()])
            .args(["--models-dir", models.to_str().unwrap()])
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(stderr).unwrap())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut lines = stdout.lines();
        let base = loop {
            let line = lines
                .next()
                .expect("the server printed its address")
                .unwrap();
            if let Some(rest) = line.strip_prefix("xmodal listening on ") {
                break rest.trim_end_matches('/').to_string();
            }
        };
        // keep draining stdout so the server never blocks on a full pipe
        std::thread::spawn(move || lines.for_each(drop));
        Server {
            child,
            base,
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL: no graceful shutdown, no index save.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn gallery_photo(id: &str) -> Vec<u8> {
    let dir = kit_model("demo-gallery").join("images");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_stem().unwrap() == id)
        .unwrap();
    std::fs::read(file).unwrap()
}

/// POST a JSON body and read a JSON answer (any status).
pub async fn post_json(
    client: &reqwest::Client,
    url: String,
    body: serde_json::Value,
) -> serde_json::Value {
    client
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// GET and read a JSON answer (any status).
pub async fn get_json(client: &reqwest::Client, url: String) -> serde_json::Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// A multipart upload of a gallery photo with captions and an optional id.
pub fn upload_form(photo: &str, captions: &[&str], id: Option<&str>) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(gallery_photo(photo)).file_name("x"),
    );
    for c in captions {
        form = form.text("caption", c.to_string());
    }
    if let Some(id) = id {
        form = form.text("id", id.to_string());
    }
    form
}

/// Upload and expect 201; returns the image id.
pub async fn upload(
    client: &reqwest::Client,
    s: &Server,
    photo: &str,
    captions: &[&str],
    id: Option<&str>,
) -> String {
    let r = client
        .post(s.url("/v1/images"))
        .multipart(upload_form(photo, captions, id))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    r.json::<serde_json::Value>().await.unwrap()["image_id"]
        .as_str()
        .unwrap()
        .to_string()
}
