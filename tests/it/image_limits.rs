//! Hostile and odd image shapes through the real server: every request's memory and time stay
//! bounded. Each request's peak is the server process's RSS high-water mark (VmHWM, reset before
//! each request through /proc/PID/clear_refs) over its RSS just before; a client timeout bounds
//! the time (a hang fails the test instead of stalling CI).

use std::{io::Cursor, time::Duration};

use crate::common::*;
use image::{DynamicImage, ImageFormat, RgbImage};
use reqwest::{Client, StatusCode};

const MIB: u64 = 1 << 20;

/// The server's RSS now and its peak since the last reset, in bytes.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap()
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// How much one request raised the server's peak RSS over what it held before it.
async fn peak_growth<T>(pid: u32, request: impl std::future::Future<Output = T>) -> (T, u64) {
    // "5": reset the high-water mark to the current RSS (Linux 4.0+)
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let (before, _) = rss(pid);
    let out = request.await;
    let (_, peak) = rss(pid);
    (out, peak.saturating_sub(before))
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), format).unwrap();
    out
}

fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    })
}

/// A JPEG whose EXIF says "rotate 90° clockwise to display" (orientation 6), as phones write.
fn exif_rotated_jpeg(w: u32, h: u32) -> Vec<u8> {
    let jpeg = encode(&DynamicImage::ImageRgb8(gradient(w, h)), ImageFormat::Jpeg);
    // APP1: "Exif\0\0", little-endian TIFF header, one IFD entry: 0x0112 SHORT 1 = 6
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&0x0112u16.to_le_bytes());
    tiff.extend_from_slice(&3u16.to_le_bytes());
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&6u16.to_le_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(tiff);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend(app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn chunk(fourcc: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = fourcc.to_vec();
    c.extend_from_slice(&(data.len() as u32).to_le_bytes());
    c.extend_from_slice(data);
    if data.len() % 2 == 1 {
        c.push(0);
    }
    c
}

fn u24(v: u32) -> [u8; 3] {
    [v as u8, (v >> 8) as u8, (v >> 16) as u8]
}

/// An animated WebP of `frames` lossless frames on a `w`×`h` canvas (RIFF/VP8X/ANIM/ANMF, each
/// frame's VP8L chunk taken from the image crate's lossless encoder).
fn animated_webp(w: u32, h: u32, frames: u32) -> Vec<u8> {
    let mut vp8x = vec![0x02 | 0x10, 0, 0, 0]; // animation + alpha
    vp8x.extend_from_slice(&u24(w - 1));
    vp8x.extend_from_slice(&u24(h - 1));
    let mut body = b"WEBP".to_vec();
    body.extend(chunk(b"VP8X", &vp8x));
    body.extend(chunk(b"ANIM", &[0, 0, 0, 0, 0, 0]));
    for f in 0..frames {
        let frame = DynamicImage::ImageRgba8(image::RgbaImage::from_fn(w, h, |x, y| {
            image::Rgba([(x * 7 + f * 40) as u8, (y * 3) as u8, 90, 255])
        }));
        let still = encode(&frame, ImageFormat::WebP);
        assert_eq!(&still[12..16], b"VP8L", "lossless still");
        let mut anmf = Vec::new();
        anmf.extend_from_slice(&u24(0));
        anmf.extend_from_slice(&u24(0));
        anmf.extend_from_slice(&u24(w - 1));
        anmf.extend_from_slice(&u24(h - 1));
        anmf.extend_from_slice(&u24(100));
        anmf.push(0);
        anmf.extend_from_slice(&still[12..]);
        body.extend(chunk(b"ANMF", &anmf));
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend(body);
    out
}

async fn search_image(c: &Client, s: &Server, bytes: Vec<u8>, mime: &str) -> (StatusCode, String) {
    let r = c
        .post(s.url("/v1/search/image?k=3"))
        .header("content-type", mime)
        .body(bytes)
        .send()
        .await
        .expect("answered within the client timeout");
    let status = r.status();
    (status, r.text().await.unwrap())
}

/// One request: the image, what the server must answer, and the bound on its peak RSS growth.
struct Case {
    name: String,
    bytes: Vec<u8>,
    mime: &'static str,
    status: StatusCode,
    code: Option<&'static str>,
    bound: u64,
}

fn case(
    name: &str,
    bytes: Vec<u8>,
    mime: &'static str,
    status: StatusCode,
    code: Option<&'static str>,
    bound: u64,
) -> Case {
    Case {
        name: name.to_string(),
        bytes,
        mime,
        status,
        code,
        bound,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_image_shape_costs_bounded_memory_and_time() {
    let server = Server::start(&tempdir("image-limits"), &[]);
    let pid = server.child.id();
    let c = Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let png = |img: DynamicImage| encode(&img, ImageFormat::Png);
    // warm-up: the encoder's first forward allocates its working memory once
    let (status, _) = search_image(&c, &server, png(gradient(320, 240).into()), "image/png").await;
    assert_eq!(status, StatusCode::OK);

    let mut cases: Vec<Case> = vec![
        // the 254-byte PNG that once made a 15.36 M × 256 intermediate (7.7 GB and climbing)
        case(
            "60000x1",
            png(DynamicImage::new_luma8(60_000, 1)),
            "image/png",
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("invalid_request"),
            16 * MIB,
        ),
        case(
            "1x60000",
            png(DynamicImage::new_luma8(1, 60_000)),
            "image/png",
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("invalid_request"),
            16 * MIB,
        ),
        // the most elongated shapes accepted: computed at the crop's size, not resized whole
        case(
            "20x1",
            png(gradient(20, 1).into()),
            "image/png",
            StatusCode::OK,
            None,
            32 * MIB,
        ),
        case(
            "8000x400",
            png(gradient(8000, 400).into()),
            "image/png",
            StatusCode::OK,
            None,
            48 * MIB,
        ),
        case(
            "400x8000",
            png(gradient(400, 8000).into()),
            "image/png",
            StatusCode::OK,
            None,
            48 * MIB,
        ),
        case(
            "1x1",
            png(gradient(1, 1).into()),
            "image/png",
            StatusCode::OK,
            None,
            32 * MIB,
        ),
        // one pixel over the pixel limit: refused from the header, nothing decoded
        case(
            "8193x8192",
            png(DynamicImage::new_luma8(8193, 8192)),
            "image/png",
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("payload_too_large"),
            16 * MIB,
        ),
        // a 16-bit RGBA PNG needing 11 bytes a pixel over the decode budget: refused unread
        case(
            "5200x5200 rgba16",
            png(DynamicImage::new_rgba16(5200, 5200)),
            "image/png",
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("payload_too_large"),
            16 * MIB,
        ),
        case(
            "exif-rotated jpeg",
            exif_rotated_jpeg(640, 480),
            "image/jpeg",
            StatusCode::OK,
            None,
            32 * MIB,
        ),
        case(
            "animated webp, 4 frames",
            animated_webp(300, 200, 4),
            "image/webp",
            StatusCode::OK,
            None,
            32 * MIB,
        ),
    ];
    let rgb = DynamicImage::ImageRgb8(gradient(640, 480));
    for (name, img) in [
        ("luma8", rgb.to_luma8().into()),
        ("luma_a8", rgb.to_luma_alpha8().into()),
        ("rgb8", rgb.clone()),
        ("rgba8", rgb.to_rgba8().into()),
        ("luma16", rgb.to_luma16().into()),
        ("luma_a16", rgb.to_luma_alpha16().into()),
        ("rgb16", rgb.to_rgb16().into()),
        ("rgba16", rgb.to_rgba16().into()),
    ] {
        cases.push(case(
            &format!("png {name}"),
            png(img),
            "image/png",
            StatusCode::OK,
            None,
            32 * MIB,
        ));
    }
    cases.push(case(
        "jpeg luma8",
        encode(
            &DynamicImage::ImageLuma8(image::imageops::grayscale(&gradient(640, 480))),
            ImageFormat::Jpeg,
        ),
        "image/jpeg",
        StatusCode::OK,
        None,
        32 * MIB,
    ));
    cases.push(case(
        "webp rgba8",
        encode(
            &DynamicImage::ImageRgb8(gradient(640, 480))
                .to_rgba8()
                .into(),
            ImageFormat::WebP,
        ),
        "image/webp",
        StatusCode::OK,
        None,
        32 * MIB,
    ));
    // the largest accepted: 8192 × 8192 RGB at the pixel limit, 192 MiB decoded (blocks of one
    // colour, so the PNG stays under the body limit)
    let blocks = RgbImage::from_fn(8192, 8192, |x, y| {
        image::Rgb([(x / 64) as u8, (y / 64) as u8, 128])
    });
    let blocks = png(blocks.into());
    assert!(blocks.len() < 20 << 20, "{} bytes", blocks.len());
    cases.push(case(
        "8192x8192 max pixels",
        blocks,
        "image/png",
        StatusCode::OK,
        None,
        preprocess_budget() + 48 * MIB,
    ));

    for Case {
        name,
        bytes,
        mime,
        status,
        code,
        bound,
    } in cases
    {
        let started = std::time::Instant::now();
        let ((got, body), growth) = peak_growth(pid, search_image(&c, &server, bytes, mime)).await;
        eprintln!(
            "{name}: {got} in {:.0} ms, peak RSS +{:.1} MiB (bound {} MiB)",
            started.elapsed().as_secs_f64() * 1e3,
            growth as f64 / MIB as f64,
            bound / MIB
        );
        assert_eq!(got, status, "{name}: {body}");
        if let Some(code) = code {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error"]["code"], code, "{name}: {body}");
        }
        assert!(
            growth <= bound,
            "{name}: peak RSS grew {} MiB, over {} MiB",
            growth / MIB,
            bound / MIB
        );
    }

    // nothing is left counted as decoding once every request has answered
    let metrics = c
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let in_flight = metrics
        .lines()
        .find(|l| l.starts_with("xmodal_decode_bytes_in_flight "))
        .unwrap_or_else(|| panic!("no decode gauge in /metrics"));
    assert_eq!(
        in_flight.split_whitespace().nth(1),
        Some("0"),
        "{in_flight}"
    );
}

fn preprocess_budget() -> u64 {
    xmodal::encode::image::preprocess::DECODE_BUDGET_BYTES
}

/// Uploads and thumbnails take the same bounded path: an EXIF-rotated photo is stored with its
/// displayed size, a panorama's thumbnail fits its box, and an absurd shape is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_and_thumbnails_use_the_displayed_shape() {
    let server = Server::start(&tempdir("image-limits-upload"), &[]);
    let pid = server.child.id();
    let c = Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let upload = |bytes: Vec<u8>, id: &str| {
        let form = reqwest::multipart::Form::new()
            .part("image", reqwest::multipart::Part::bytes(bytes))
            .text("caption", "a test pattern")
            .text("id", id.to_string());
        c.post(server.url("/v1/images")).multipart(form).send()
    };
    let r = upload(exif_rotated_jpeg(640, 480), "rotated")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let info = get_json(&c, server.url("/v1/images/rotated")).await;
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(480), Some(640))
    );
    let thumb = c
        .get(server.url("/v1/images/rotated/file?size=64"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let thumb = image::load_from_memory(&thumb).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (48, 64));

    let wide = encode(&gradient(8000, 400).into(), ImageFormat::Png);
    assert_eq!(
        upload(wide, "panorama").await.unwrap().status(),
        StatusCode::CREATED
    );
    let (thumb, growth) = peak_growth(pid, async {
        c.get(server.url("/v1/images/panorama/file?size=256"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    })
    .await;
    let thumb = image::load_from_memory(&thumb).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (256, 13));
    assert!(
        growth <= 48 * MIB,
        "thumbnail: peak RSS +{} MiB",
        growth / MIB
    );

    let r = upload(
        encode(&DynamicImage::new_luma8(60_000, 1), ImageFormat::Png),
        "line",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("more than 20 times"),
        "{body}"
    );
}
