//! Our metrics against an independent numpy implementation (scripts/fixtures/make_metric_fixtures.py) on
//! random score matrices.

use crate::common::*;
use xmodal::eval::{evaluate, DirectionMetrics};

fn check(ours: &DirectionMetrics, theirs: &serde_json::Value, what: &str) {
    let pairs = [
        ("r1", ours.r1),
        ("r5", ours.r5),
        ("r10", ours.r10),
        ("medr", ours.medr),
        ("meanr", ours.meanr),
        ("map@1", ours.map1),
        ("map@5", ours.map5),
        ("map@10", ours.map10),
    ];
    for (key, value) in pairs {
        let expected = theirs[key].as_f64().unwrap();
        assert!(
            (value - expected).abs() < 1e-9,
            "{what} {key}: ours {value}, numpy {expected}"
        );
    }
}

#[test]
fn metrics_match_numpy_reference_on_random_rankings() {
    let cases = read_json("metrics/random.json");
    for (n, case) in cases.as_array().unwrap().iter().enumerate() {
        let scores = matrix(&case["scores"]);
        let text_image: Vec<usize> = case["text_image"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let m = evaluate(&scores, &text_image);
        check(&m.i2t, &case["i2t"], &format!("case {n} i2t"));
        check(&m.t2i, &case["t2i"], &format!("case {n} t2i"));
    }
}
