//! The generic device path — candle ops only, data on the device from input to output, what a GPU
//! runs — exercised on the CPU with `XMODAL_GENERIC_DEVICE_PATH=1` (see `xmodal::device::
//! cpu_kernels`): this binary's own encoder-parity, zero-shot, training and serve tests run again
//! in a child process on that path, and the generic path's embeddings are compared with the
//! CPU-specialised ones.

use std::process::Command;

use crate::common::*;

const GENERIC: &str = "XMODAL_GENERIC_DEVICE_PATH";

/// The encoders against the PyTorch fixtures, ConSE and the zero-shot head on real photos,
/// training through candle autograd + candle's AdamW (the fused step is CPU-only), and whole
/// serve round trips (projection of stored features at start-up, uploads, searches): the same
/// assertions as on the specialised path.
#[test]
fn parity_heads_training_and_serve_pass_on_the_generic_path() {
    if std::env::var_os(GENERIC).is_some() {
        return; // this is the child run below
    }
    let modules = [
        "encoders_parity::",
        "zero_shot::",
        "train_heads::",
        "serve_api::",
    ];
    let out = Command::new(std::env::current_exe().unwrap())
        .args(modules)
        .args(["--test-threads", "2"])
        .env(GENERIC, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tests failed on the generic device path:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passed: usize = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
        .sum();
    eprintln!("generic device path: {passed} tests passed");
    assert!(passed >= 15, "only {passed} tests ran:\n{stdout}");
}

/// `--precision f16` (what `auto` picks on a GPU) through whole serve round trips: every route as
/// documented and hostile input still a 4xx, with f16 encoders (on the CPU: the generic path).
#[test]
fn serve_round_trips_pass_with_f16_encoders() {
    if std::env::var_os(GENERIC).is_some() || std::env::var_os("XMODAL_PRECISION").is_some() {
        return; // a child run
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "serve_api::every_route_answers_as_documented",
            "serve_api::bad_input_gets_a_4xx_json_error_and_never_a_5xx",
        ])
        .args(["--test-threads", "2"])
        .env("XMODAL_PRECISION", "f16")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "serve tests failed with f16 encoders:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("test result: ok. 2 passed"), "{stdout}");
}

/// BERT (our attention and GELU kernels vs candle's softmax and gelu_erf), both kit CNNs
/// (im2col and our depthwise kernel vs candle's conv2d with groups) and the CLIP-family towers
/// (causal attention, quick GELU, tanh GELU vs candle's ops) give the same embeddings on both
/// paths: max |difference| ≤ 1e-5 for MiniLM's unit vectors, ≤ 1e-4 relative for the CNNs'
/// pooled features and the CLIP-family projections.
#[test]
fn the_generic_path_gives_the_specialised_embeddings() {
    let minilm = kit_model("minilm-l6");
    let texts = [
        "embed",
        "text",
        "--model",
        minilm.to_str().unwrap(),
        // f32 on both paths: int8 (the CPU default) is bounded against f32 in encoders_parity.rs
        "--quantization",
        "none",
        "a red circle left of a blue square",
        "two dogs play in the snow near a wooden fence, and one of them carries a stick",
        "",
    ];
    let photos = [
        fixture("parity/china.jpg"),
        fixture("parity/crop_chelsea.png"),
    ];
    for (what, args, bound) in [
        ("minilm-l6", texts.map(String::from).to_vec(), 1e-5),
        (
            "efficientnet-lite0",
            image_args("efficientnet-lite0", &photos),
            1e-4,
        ),
        ("mobilenet-v2", image_args("mobilenet-v2", &photos), 1e-4),
    ]
    .into_iter()
    .chain(
        ["clip-tiny", "siglip-tiny", "openclip-tiny"]
            .into_iter()
            .flat_map(|m| {
                let dir = crate::clip_parity::clip_fixture(m).display().to_string();
                let mut text: Vec<String> = [
                    "embed",
                    "text",
                    "--model",
                    &dir,
                    "--text-quantization",
                    "none",
                ]
                .map(String::from)
                .to_vec();
                text.extend(texts[6..].iter().map(|t| t.to_string()));
                let mut image: Vec<String> = ["embed", "image", "--model", &dir]
                    .map(String::from)
                    .to_vec();
                image.extend(photos.iter().map(|p| p.display().to_string()));
                [(m, text, 1e-4), (m, image, 1e-4)]
            }),
    ) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (specialised, generic) = (
            embeddings(&args, &[(GENERIC, "0")]),
            embeddings(&args, &[(GENERIC, "1")]),
        );
        assert_eq!(specialised.len(), generic.len());
        for (a, b) in specialised.iter().zip(&generic) {
            let scale = a.iter().fold(1e-12f64, |m, x| m.max(x.abs()));
            let diff = a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs()));
            eprintln!("{what}: max |specialised - generic| = {diff:e} (scale {scale:.3})");
            assert!(diff <= bound * scale.max(1.0), "{what}: {diff}");
        }
    }
}

fn image_args(model: &str, photos: &[std::path::PathBuf]) -> Vec<String> {
    let mut args = vec![
        "embed".to_string(),
        "image".into(),
        "--model".into(),
        kit_model(model).display().to_string(),
    ];
    args.extend(photos.iter().map(|p| p.display().to_string()));
    args
}
