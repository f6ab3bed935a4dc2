//! Folder libraries: `ingest --format folder` on a generated tree (nested folders, duplicate
//! content, unreadable and non-image files), rescans after a rename, a delete and a change with
//! exact catalog counts each time, a kill -9 mid-ingest resumed with nothing lost or duplicated,
//! and `serve --library --watch` picking up a new file.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::common::{api::Api, *};
use xmodal::{
    data::{catalog::ImageFilter, Catalog},
    library::{self, SkipReason},
};

/// A small PNG whose content depends on `seed` (distinct seeds, distinct bytes).
fn photo(seed: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(48, 40, |x, y| {
        image::Rgb([
            (x * 5 + seed * 37) as u8,
            (y * 6 + seed * 11) as u8,
            ((x + y) * 3 + seed) as u8,
        ])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn put(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn ingest_folder(data: &Path, root: &Path) -> String {
    let (ok, out, err) = xmodal(&[
        "--data-dir",
        data.to_str().unwrap(),
        "ingest",
        "--format",
        "folder",
        root.to_str().unwrap(),
    ]);
    assert!(ok, "{out}\n{err}");
    out
}

/// Images committed so far by another process, read without touching the schema (a read-only
/// connection: opening the catalog would run migrations alongside the writer's); 0 until the
/// tables exist.
async fn committed_images(data: &Path) -> usize {
    use sqlx::ConnectOptions;
    let Ok(mut conn) = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data.join("catalog.sqlite"))
        .read_only(true)
        .connect()
        .await
    else {
        return 0;
    };
    sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM images i JOIN datasets d ON d.id = i.dataset_id WHERE d.name = 'photos'",
    )
    .fetch_one(&mut conn)
    .await
    .map_or(0, |n| n as usize)
}

/// (images in the library's dataset, their ids, image feature rows stored for them)
async fn catalog_state(data: &Path) -> (usize, HashSet<String>, usize) {
    let catalog = Catalog::open(&data.join("catalog.sqlite")).await.unwrap();
    let images = catalog
        .images(&ImageFilter {
            dataset: Some(library::DEFAULT_DATASET.into()),
            split: None,
        })
        .await
        .unwrap();
    let ids: HashSet<String> = images.iter().map(|i| i.id.to_string()).collect();
    let sets = catalog.feature_sets().await.unwrap();
    let vectors = match sets.iter().find(|s| s.modality == "image") {
        Some(set) => catalog
            .vector_items(&set.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|v| ids.contains(v))
            .count(),
        None => 0,
    };
    (images.len(), ids, vectors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_is_indexed_and_rescans_follow_every_change() {
    let dir = tempdir("library-rescan");
    let (root, data) = (dir.join("photos"), dir.join("data"));
    put(&root, "a.png", &photo(1));
    put(&root, "2024/trip/b.png", &photo(2));
    put(&root, "2024/trip/b copy.png", &photo(2)); // duplicate content: its own image
    put(&root, "2024/c.PNG", &photo(3));
    put(&root, "notes.txt", b"not a photo");
    put(&root, "broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg");
    put(&root, "raw/IMG_1.heic", b"heic bytes");
    put(&root, ".thumbnails/x.png", &photo(9));
    std::os::unix::fs::symlink(root.join("gone.png"), root.join("dangling.png")).unwrap();

    let scan = library::scan(&root).unwrap();
    let reasons: Vec<(&str, &SkipReason)> = scan
        .skipped
        .iter()
        .map(|s| (s.path.as_str(), &s.reason))
        .collect();
    assert!(reasons.contains(&("notes.txt", &SkipReason::NotAnImage)));
    assert!(reasons
        .iter()
        .any(|(p, r)| *p == "dangling.png" && matches!(r, SkipReason::Unreadable(_))));
    assert!(reasons
        .iter()
        .any(|(p, r)| *p == "raw/IMG_1.heic" && matches!(r, SkipReason::UnsupportedFormat(_))));
    assert!(reasons.contains(&(".thumbnails", &SkipReason::Hidden)));

    let out = ingest_folder(&data, &root);
    assert!(out.contains("skipped broken.jpg"), "{out}");
    assert!(out.contains("4 added"), "{out}");
    let (n, ids, vectors) = catalog_state(&data).await;
    assert_eq!((n, vectors), (4, 4), "{ids:?}");
    assert!(ids.contains("a.png"));

    // unchanged: a stat each, nothing encoded
    let out = ingest_folder(&data, &root);
    assert!(
        out.contains("4 unchanged") && out.contains("0 encoded"),
        "{out}"
    );

    // a rename (the old id goes, the new one comes), a delete, a change of content, a touch
    std::fs::rename(root.join("2024/c.PNG"), root.join("2024/c-renamed.png")).unwrap();
    std::fs::remove_file(root.join("2024/trip/b copy.png")).unwrap();
    put(&root, "a.png", &photo(4));
    let b = root.join("2024/trip/b.png");
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&b)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let out = ingest_folder(&data, &root);
    assert!(
        out.contains("1 added, 1 changed, 2 removed, 0 unchanged, 1 restamped"),
        "{out}"
    );
    assert!(out.contains("2 encoded"), "{out}");
    let (n, ids, vectors) = catalog_state(&data).await;
    assert_eq!((n, vectors), (3, 3), "{ids:?}");
    assert!(!ids.iter().any(|i| i.contains("c.PNG")));

    // the server's index agrees with the catalog, and files are served from where they are
    let server = Server::start(&data, &[]);
    let api = Api::new(&server);
    assert_eq!(api.get("/ready").await["images"], 3);
    let file = api
        .http
        .get(api.url("/v1/images/a.png/file"))
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), 200);
    assert_eq!(file.bytes().await.unwrap().to_vec(), photo(4));
    // uncaptioned photos still have words: their top labels, in details and in search hits
    let info = api.get("/v1/images/a.png").await;
    assert_eq!(info["tags"].as_array().unwrap().len(), 5, "{info}");
    let hits = api.search_text("a photo", 3).await;
    assert!(
        hits["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["captions"].as_array().unwrap().is_empty()
                && h["tags"].as_array().is_some_and(|t| !t.is_empty())),
        "{hits}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_ingest_resumes_with_nothing_lost_or_duplicated() {
    let dir = tempdir("library-kill");
    let (root, data) = (dir.join("photos"), dir.join("data"));
    let total = 200;
    for i in 0..total {
        put(&root, &format!("d{}/p{i:03}.png", i % 7), &photo(100 + i));
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_xmodal"))
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "ingest",
            "--format",
            "folder",
            root.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // kill -9 once some batches are committed and before the end (bounded wait, polled)
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut committed = 0;
    while Instant::now() < deadline {
        committed = committed_images(&data).await;
        if committed >= library::BATCH {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill(); // SIGKILL (it may have finished on a fast machine)
    child.wait().unwrap();
    assert!(
        committed >= library::BATCH,
        "nothing committed before the kill"
    );
    let (at_kill, _, vectors_at_kill) = catalog_state(&data).await;
    eprintln!("killed with {at_kill} of {total} committed");
    assert_eq!(at_kill, vectors_at_kill, "an image without its features");

    let out = ingest_folder(&data, &root);
    let total = total as usize;
    let (n, ids, vectors) = catalog_state(&data).await;
    assert_eq!((n, ids.len(), vectors), (total, total, total), "{out}");
    // the resumed run redid nothing the killed one had committed
    assert!(
        out.contains(&format!("{} encoded", total - at_kill)),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_library_picks_up_new_and_deleted_files() {
    let dir = tempdir("library-watch");
    let (root, data): (PathBuf, PathBuf) = (dir.join("photos"), dir.join("data"));
    put(&root, "first.png", &photo(7));
    let server = Server::start(&data, &["--library", root.to_str().unwrap(), "--watch"]);
    let api = Api::new(&server);
    assert_eq!(api.get("/ready").await["images"], 1);
    let wait_for = |expected: u64| {
        let api = &api;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let n = api.get("/ready").await["images"].as_u64().unwrap();
                if n == expected || Instant::now() > deadline {
                    return n;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    put(&root, "new/second.png", &photo(8));
    assert_eq!(wait_for(2).await, 2, "the new file was not indexed");
    let hits = api.get("/v1/images/first.png/similar?k=5").await;
    assert_eq!(hits["results"].as_array().unwrap().len(), 1, "{hits}");
    std::fs::remove_file(root.join("first.png")).unwrap();
    assert_eq!(wait_for(1).await, 1, "the deleted file is still indexed");
}
