//! The web page in a real headless browser (Debian chromium + chromedriver, driven by
//! tests/browser/e2e.mjs): type a caption, see ranked images; upload a photo, see captions; no
//! console errors. Leaves a screenshot in the target directory.

use crate::common::*;
use reqwest::{multipart, Client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_page_works_in_headless_chromium() {
    let server = Server::start(&tempdir("browser"), &[]);
    let c = Client::new();
    for (photo, caption) in [
        ("chelsea", "a close-up of a tabby cat's face"),
        ("coffee", "a cup of coffee on a red saucer"),
        ("rocket", "a rocket on the launch pad"),
        ("horse", "a horse silhouette"),
    ] {
        let form = multipart::Form::new()
            .part("image", multipart::Part::bytes(gallery_photo(photo)))
            .text("caption", caption)
            .text("id", photo);
        assert_eq!(
            c.post(server.url("/v1/images"))
                .multipart(form)
                .send()
                .await
                .unwrap()
                .status(),
            201
        );
    }
    // a photo whose EXIF says when it was taken, for the filter bar
    let beach = std::fs::read(fixture("exif/2024/summer/beach.jpg")).unwrap();
    let form = multipart::Form::new()
        .part("image", multipart::Part::bytes(beach))
        .text("caption", "a made-up picture with a date")
        .text("id", "beach");
    let r = c
        .post(server.url("/v1/images"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let photo = kit_model("demo-gallery").join("images/coffee.png");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-e2e.png");
    let out = tokio::process::Command::new("node")
        .arg(repo().join("tests/browser/e2e.mjs"))
        .arg(format!("{}/", server.base))
        .arg(&photo)
        .arg(&shot)
        .output()
        .await
        .expect(
            "node (the browser test needs node, chromium and chromedriver; .ci/run installs them)",
        );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}screenshot: {}", shot.display());
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
}
