//! Datasets into the catalog, on fixture files in the exact upstream formats (with the real
//! files' quirks), and the generated benchmark's determinism.

use std::collections::BTreeMap;

use crate::common::*;
use xmodal::data::{
    catalog::ImageFilter,
    ingest::{self, coco, flickr30k, jsonl, IngestReport},
    synth, Catalog, ImageId, Split,
};

async fn catalog(tag: &str) -> Catalog {
    Catalog::open(&tempdir(tag).join("catalog.sqlite"))
        .await
        .unwrap()
}

fn kinds(r: &IngestReport) -> BTreeMap<&'static str, usize> {
    r.skipped_by_kind()
}

fn counts(pairs: &[(&str, (u64, u64))]) -> BTreeMap<String, (u64, u64)> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[tokio::test]
async fn flickr30k_kaggle_csv_with_karpathy_split() {
    let cat = catalog("f30k").await;
    let dir = fixture("flickr30k");
    let src = flickr30k::Flickr30kSource {
        captions: Some(&dir.join("results.csv")),
        images: &dir.join("flickr30k_images"),
        karpathy: Some(&dir.join("dataset_flickr30k.json")),
        seed: 0,
    };
    let report = ingest::ingest(
        &cat,
        ("flickr30k", "flickr30k", "fixture"),
        flickr30k::parse(&src).unwrap(),
        false,
    )
    .await
    .unwrap();
    assert_eq!(report.read, 52, "{report}");
    assert_eq!(report.inserted, 8, "{report}");
    let expected: BTreeMap<&str, usize> = [
        ("malformed", 1),
        ("duplicate caption line", 1),
        ("missing image", 1),
        ("undecodable image", 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(kinds(&report), expected, "{report}");
    // the malformed line is reported with file:line
    let (origin, _) = report
        .skipped
        .iter()
        .find(|(_, r)| r.kind() == "malformed")
        .unwrap();
    assert!(origin.ends_with("results.csv:43"), "{origin}");
    assert_eq!(
        cat.counts(Some("flickr30k")).await.unwrap(),
        counts(&[("train", (5, 25)), ("val", (2, 10)), ("test", (1, 5))])
    );
    // the line that lost its separator is repaired, not dropped
    let caps = cat
        .captions_of(&ImageId::new("2199200615.jpg").unwrap())
        .await
        .unwrap();
    assert_eq!(caps.len(), 5);
    assert_eq!(
        caps[4].text,
        "A dog runs on the green grass near a wooden fence ."
    );
    // stored with its real size and content hash
    let img = cat
        .image(&ImageId::new("1000092795.jpg").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (img.width, img.height, img.split),
        (Some(40), Some(30), Some(Split::Train))
    );
    assert_eq!(img.sha256.as_ref().unwrap().len(), 64);

    // idempotent: nothing new, nothing duplicated
    let again = ingest::ingest(
        &cat,
        ("flickr30k", "flickr30k", "fixture"),
        flickr30k::parse(&src).unwrap(),
        false,
    )
    .await
    .unwrap();
    assert_eq!((again.inserted, again.updated, again.unchanged), (0, 0, 8));
    assert_eq!(
        cat.captions(&ImageFilter::default()).await.unwrap().len(),
        40
    );
}

#[tokio::test]
async fn flickr30k_without_split_file_gets_a_derived_split() {
    let cat = catalog("f30k-derived").await;
    let dir = fixture("flickr30k");
    let src = flickr30k::Flickr30kSource {
        captions: Some(&dir.join("results.csv")),
        images: &dir.join("flickr30k_images"),
        karpathy: None,
        seed: 0,
    };
    let parsed = flickr30k::parse(&src).unwrap();
    // 10 images: Karpathy proportions round to 0 test and 0 val; every image lands in train
    assert!(parsed
        .candidates
        .iter()
        .all(|c| c.split == Some(Split::Train)));
    let report = ingest::ingest(&cat, ("f", "flickr30k", "fixture"), parsed, false)
        .await
        .unwrap();
    assert_eq!(report.inserted, 8);
}

#[tokio::test]
async fn flickr30k_from_karpathy_file_alone() {
    let cat = catalog("f30k-karpathy").await;
    let dir = fixture("flickr30k");
    let src = flickr30k::Flickr30kSource {
        captions: None,
        images: &dir.join("flickr30k_images"),
        karpathy: Some(&dir.join("dataset_flickr30k.json")),
        seed: 0,
    };
    let report = ingest::ingest(
        &cat,
        ("k", "flickr30k", "fixture"),
        flickr30k::parse(&src).unwrap(),
        false,
    )
    .await
    .unwrap();
    assert_eq!(report.read, 10);
    assert_eq!(report.inserted, 8, "{report}");
    // the Karpathy file only has the 4 well-formed captions of the defective image
    assert_eq!(
        cat.captions_of(&ImageId::new("2199200615.jpg").unwrap())
            .await
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test]
async fn coco_annotations() {
    let cat = catalog("coco").await;
    let dir = fixture("coco");
    let parsed = coco::parse(
        &dir.join("captions_val2014.json"),
        &dir.join("images"),
        None,
        Some(Split::Val),
    )
    .unwrap();
    let report = ingest::ingest(&cat, ("coco", "coco", "fixture"), parsed, false)
        .await
        .unwrap();
    assert_eq!(report.read, 26);
    assert_eq!(report.inserted, 4);
    assert_eq!(
        kinds(&report),
        [("malformed", 1), ("no captions", 1)]
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        "{report}"
    );
    assert_eq!(
        cat.counts(Some("coco")).await.unwrap(),
        counts(&[("val", (4, 20))])
    );
}

#[tokio::test]
async fn jsonl_with_bad_lines_reports_each_one() {
    let cat = catalog("jsonl").await;
    let report = ingest::ingest(
        &cat,
        ("j", "jsonl", "fixture"),
        jsonl::parse(&fixture("jsonl/dataset.jsonl")).unwrap(),
        true,
    )
    .await
    .unwrap();
    assert_eq!(report.read, 9);
    assert_eq!(report.inserted, 3, "{report}");
    let expected: BTreeMap<&str, usize> = [
        ("malformed", 2),
        ("duplicate id", 1),
        ("missing image", 1),
        ("no captions", 1),
        ("invalid id", 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(kinds(&report), expected, "{report}");
    let ids: Vec<String> = cat
        .images(&ImageFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id.to_string())
        .collect();
    assert_eq!(ids, ["p0", "p1.png", "p2"]);
    assert!(report.to_string().contains("dataset.jsonl:9"), "{report}");
}

#[tokio::test]
async fn an_id_owned_by_another_dataset_is_not_stolen() {
    let cat = catalog("conflict").await;
    let path = fixture("jsonl/dataset.jsonl");
    ingest::ingest(
        &cat,
        ("first", "jsonl", "a"),
        jsonl::parse(&path).unwrap(),
        false,
    )
    .await
    .unwrap();
    let second = ingest::ingest(
        &cat,
        ("second", "jsonl", "b"),
        jsonl::parse(&path).unwrap(),
        false,
    )
    .await
    .unwrap();
    assert_eq!(second.inserted, 0);
    assert_eq!(kinds(&second).get("id used by another dataset"), Some(&3));
}

#[test]
fn synth_is_deterministic_by_seed() {
    let (a, b, c) = (tempdir("synth-a"), tempdir("synth-b"), tempdir("synth-c"));
    synth::generate(&a, 42, 30, |_| {}).unwrap();
    synth::generate(&b, 42, 30, |_| {}).unwrap();
    synth::generate(&c, 43, 30, |_| {}).unwrap();
    let read = |d: &std::path::Path, f: &str| std::fs::read(d.join(f)).unwrap();
    assert_eq!(read(&a, "dataset.jsonl"), read(&b, "dataset.jsonl"));
    assert_eq!(
        read(&a, "images/synth-000007.png"),
        read(&b, "images/synth-000007.png")
    );
    assert_ne!(read(&a, "dataset.jsonl"), read(&c, "dataset.jsonl"));
    let lines = String::from_utf8(read(&a, "dataset.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 30);
}

#[tokio::test]
async fn synth_output_ingests_as_jsonl() {
    let dir = tempdir("synth-ingest");
    synth::generate(&dir, 1, 40, |_| {}).unwrap();
    let cat = catalog("synth-cat").await;
    let report = ingest::ingest(
        &cat,
        ("synth", "jsonl", "synth"),
        jsonl::parse(&dir.join("dataset.jsonl")).unwrap(),
        true,
    )
    .await
    .unwrap();
    assert_eq!((report.inserted, report.skipped.len()), (40, 0), "{report}");
    assert_eq!(
        cat.counts(Some("synth")).await.unwrap(),
        counts(&[("train", (32, 160)), ("val", (4, 20)), ("test", (4, 20))])
    );
}

#[tokio::test]
async fn the_demo_gallery_ingests_every_real_photo() {
    let gallery = kit_model("demo-gallery");
    let cat = catalog("gallery").await;
    let report = ingest::ingest(
        &cat,
        ("gallery", "jsonl", "kit"),
        jsonl::parse(&gallery.join("dataset.jsonl")).unwrap(),
        true,
    )
    .await
    .unwrap();
    assert_eq!((report.inserted, report.skipped.len()), (45, 0), "{report}");
    assert_eq!(
        cat.captions(&ImageFilter::default()).await.unwrap().len(),
        225
    );
    let cat_photo = cat
        .image(&ImageId::new("chelsea").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((cat_photo.width, cat_photo.height), (Some(451), Some(300)));
}
