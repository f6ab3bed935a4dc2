//! The zero-shot head makes the real photos of the demo gallery searchable by caption with no
//! training: catalog → extract (real MiniLM and EfficientNet-Lite0 weights) → ConSE → metrics.

use crate::common::*;
use candle_core::{DType, Device, Tensor};
use xmodal::{
    data::{catalog::ImageFilter, ingest, Catalog},
    encode::{ImageEncoder, Precision, TextEncoder, TextOptions},
    eval::evaluate_projector,
    features::{
        extract::{caption_items, extract, image_items, Encoder, ExtractOptions},
        paired::PairedSet,
        FeatureSpec,
    },
    heads::{
        class_cache,
        conse::{class_texts_hash, ClassText, DEFAULT_TOP},
        similarity, ConSE, Projector,
    },
};

#[tokio::test]
async fn real_photos_are_searchable_by_caption_out_of_the_box() {
    let dir = tempdir("zero-shot");
    let cat = Catalog::open(&dir.join("catalog.sqlite")).await.unwrap();
    let gallery = kit_model("demo-gallery");
    let parsed = ingest::jsonl::parse(&gallery.join("dataset.jsonl")).unwrap();
    ingest::ingest(&cat, ("gallery", "jsonl", "kit"), parsed, false)
        .await
        .unwrap();

    let (img_dir, txt_dir) = (kit_model("efficientnet-lite0"), kit_model("minilm-l6"));
    let image = ImageEncoder::load(&img_dir, Precision::F32, &Device::Cpu).unwrap();
    let text = TextEncoder::load(&txt_dir, &TextOptions::default(), &Device::Cpu).unwrap();
    let (ispec, tspec) = (
        FeatureSpec::for_image(&img_dir, &image).unwrap(),
        FeatureSpec::for_text(&txt_dir, &text).unwrap(),
    );
    let root = dir.join("features");
    let all = ImageFilter::default();
    let opts = ExtractOptions::default();
    extract(
        &root,
        &ispec,
        Encoder::Image(&image),
        image_items(&cat.images(&all).await.unwrap()),
        &opts,
        &|_| {},
        &|_, _| {},
    )
    .unwrap();
    extract(
        &root,
        &tspec,
        Encoder::Text(&text),
        caption_items(&cat.captions(&all).await.unwrap()),
        &opts,
        &|_| {},
        &|_, _| {},
    )
    .unwrap();

    let set = PairedSet::load(&cat, &all, &root, &ispec.id(), &tspec.id(), &Device::Cpu)
        .await
        .unwrap();
    assert_eq!((set.image_ids.len(), set.text_image.len()), (45, 225));
    let head = |top, class_text| {
        Projector::ZeroShot(Box::new(
            ConSE::new(image.classifier().unwrap().clone(), &text, top, class_text).unwrap(),
        ))
    };
    let plain = evaluate_projector(&head(10, ClassText::Name), &set).unwrap();
    let projector = head(DEFAULT_TOP, ClassText::NameAndGloss);
    let m = evaluate_projector(&projector, &set).unwrap();
    for (name, m) in [("plain", &plain), ("default", &m)] {
        eprintln!(
            "zero-shot ({name}) on the gallery: t2i R@1 {:.1} R@5 {:.1}, i2t R@1 {:.1} R@5 {:.1}",
            m.t2i.r1, m.t2i.r5, m.i2t.r1, m.i2t.r5
        );
    }
    // chance is 1/45 = 2.2% R@1 for caption → image
    assert!(m.t2i.r1 >= 40.0 && m.t2i.r5 >= 75.0, "{m:?}");
    // describing classes by their glosses is what lifts it over a plain ConSE
    assert!(m.t2i.r5 >= plain.t2i.r5 + 5.0, "{m:?}\n{plain:?}");
    assert!(m.i2t.r5 >= plain.i2t.r5 + 5.0, "{m:?}\n{plain:?}");

    // a typed query, encoded live, finds the right photo first
    for (query, expected) in [
        ("a tabby cat", "chelsea"),
        ("a cup of espresso", "coffee"),
        ("a rocket on the launch pad", "rocket"),
    ] {
        let q = projector.texts(&text.encode(&[query]).unwrap()).unwrap();
        let scores: Vec<f32> = similarity(
            &projector.images(&set.images).unwrap(),
            &q,
            projector.score(),
        )
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
        let best = scores
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(set.image_ids[best].as_str(), expected, "query {query:?}");
    }
}

/// The class embeddings are made once per text encoder and class texts, then read back: a file
/// with the right texts' hash is used as it is (here: zeros, so reading is visible), one made
/// from other texts is replaced.
#[test]
fn class_embeddings_are_kept_and_checked() {
    let dir = tempdir("zero-shot-classes");
    let txt_dir = kit_model("minilm-l6");
    let text = TextEncoder::load(&txt_dir, &TextOptions::default(), &Device::Cpu).unwrap();
    let set = FeatureSpec::for_text(&txt_dir, &text).unwrap().id();
    let load = || {
        class_cache::load_or_make(&dir, &text, &set, ClassText::NameAndGloss, &Device::Cpu).unwrap()
    };
    let made = load();
    assert_eq!(made.dims(), [1000, 384]);
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "one file, no temporaries left");
    let path = files[0].path();

    let zeros = Tensor::zeros((1000, 384), DType::F32, &Device::Cpu).unwrap();
    let write = |hash: &str| {
        let meta = [("class_texts_sha256".to_string(), hash.to_string())].into();
        let bytes = safetensors::serialize([("class_embeddings", &zeros)], Some(meta)).unwrap();
        std::fs::write(&path, bytes).unwrap();
    };
    write(&class_texts_hash(ClassText::NameAndGloss));
    let read = load()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(
        read, 0.0,
        "a file with the same texts' hash is read, not remade"
    );

    write(&class_texts_hash(ClassText::Name));
    let remade = load();
    let diff = (remade - &made)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-6, "a file from other texts is remade: {diff}");
}
