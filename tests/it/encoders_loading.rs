//! Loading paths users rely on beyond the kit: HF-layout BERT with a `bert.` prefix and no
//! manifest, timm's VGG16 key names, FastText `.vec`, the GloVe kit layout and its OOV policy.

use std::collections::HashMap;

use crate::common::*;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use xmodal::{
    encode::{image::Backbone, Pooling, TextEncoder, TextOptions},
    kit::{Architecture, Manifest},
};

/// A tiny randomly-initialised BERT in bert-base-uncased's layout (keys prefixed `bert.`, no
/// xmodal.json), with MiniLM's tokenizer.
fn write_tiny_bert(dir: &std::path::Path) {
    let (vocab, h, inter, positions, layers) = (30522, 32, 64, 64, 2);
    let config = serde_json::json!({
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": vocab, "hidden_size": h,
        "num_hidden_layers": layers, "num_attention_heads": 4, "intermediate_size": inter,
        "hidden_act": "gelu", "max_position_embeddings": positions, "type_vocab_size": 2,
        "layer_norm_eps": 1e-12
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(
        kit_model("minilm-l6").join("tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    let dev = Device::Cpu;
    let mut t: HashMap<String, Tensor> = HashMap::new();
    let mut add = |name: String, shape: &[usize]| {
        t.insert(
            format!("bert.{name}"),
            Tensor::randn(0f32, 0.1, shape, &dev).unwrap(),
        );
    };
    add("embeddings.word_embeddings.weight".into(), &[vocab, h]);
    add(
        "embeddings.position_embeddings.weight".into(),
        &[positions, h],
    );
    add("embeddings.token_type_embeddings.weight".into(), &[2, h]);
    add("embeddings.LayerNorm.weight".into(), &[h]);
    add("embeddings.LayerNorm.bias".into(), &[h]);
    for l in 0..layers {
        let p = format!("encoder.layer.{l}");
        for (name, out, inp) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", inter, h),
            ("output.dense", h, inter),
        ] {
            add(format!("{p}.{name}.weight"), &[out, inp]);
            add(format!("{p}.{name}.bias"), &[out]);
        }
        for n in ["attention.output.LayerNorm", "output.LayerNorm"] {
            add(format!("{p}.{n}.weight"), &[h]);
            add(format!("{p}.{n}.bias"), &[h]);
        }
    }
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
}

#[test]
fn hf_layout_bert_without_manifest_loads_and_truncates() {
    let dir = tempdir("tiny-bert");
    write_tiny_bert(&dir);
    let manifest = Manifest::load(&dir).unwrap();
    assert_eq!(
        (
            manifest.architecture,
            manifest.dims,
            manifest.pooling.as_deref()
        ),
        (Architecture::Bert, 32, Some("cls"))
    );
    let enc = TextEncoder::load(&dir, &TextOptions::default(), &Device::Cpu).unwrap();
    // 64 positions: anything longer must be truncated, not index past the position table
    let long = "word ".repeat(500);
    let out = enc.encode(&["a short caption", &long, ""]).unwrap();
    assert_eq!(out.dims(), &[3, 32]);
    let rows: Vec<Vec<f32>> = out.to_vec2().unwrap();
    assert!(rows.iter().flatten().all(|x| x.is_finite()));
    // padding must not leak into a sentence's vector
    let alone: Vec<Vec<f32>> = enc.encode(&["a short caption"]).unwrap().to_vec2().unwrap();
    assert!(max_abs_diff(&alone, &rows[..1]) < 1e-5);
    // a max_length above the model's positions is clamped to them
    let opts = TextOptions {
        max_length: Some(10_000),
        pooling: Some(Pooling::Mean),
        ..Default::default()
    };
    let enc = TextEncoder::load(&dir, &opts, &Device::Cpu).unwrap();
    assert_eq!(enc.encode(&[&long]).unwrap().dims(), &[1, 32]);
}

#[test]
fn timm_vgg16_keys_give_the_same_fc7_as_torchvision_keys() {
    let dev = Device::Cpu;
    let mut tv: HashMap<String, Tensor> = HashMap::new();
    let mut c_in = 3;
    let mut index = 0;
    for c in [
        64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
    ] {
        if c == 0 {
            index += 1;
            continue;
        }
        let bound = (1.0 / (c_in * 9) as f32).sqrt() * 1.7;
        tv.insert(
            format!("features.{index}.weight"),
            Tensor::rand(-bound, bound, (c, c_in, 3, 3), &dev).unwrap(),
        );
        tv.insert(
            format!("features.{index}.bias"),
            Tensor::rand(0f32, 0.05, c, &dev).unwrap(),
        );
        c_in = c;
        index += 2;
    }
    for (i, out, inp) in [(0, 4096, 25088), (3, 4096, 4096), (6, 1000, 4096)] {
        let bound = (1.0 / inp as f32).sqrt() * 1.7;
        tv.insert(
            format!("classifier.{i}.weight"),
            Tensor::rand(-bound, bound, (out, inp), &dev).unwrap(),
        );
        tv.insert(
            format!("classifier.{i}.bias"),
            Tensor::rand(0f32, 0.05, out, &dev).unwrap(),
        );
    }
    let mut timm: HashMap<String, Tensor> = tv
        .iter()
        .filter(|(k, _)| k.starts_with("features"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    timm.insert(
        "pre_logits.fc1.weight".into(),
        tv["classifier.0.weight"]
            .reshape((4096, 512, 7, 7))
            .unwrap(),
    );
    timm.insert(
        "pre_logits.fc1.bias".into(),
        tv["classifier.0.bias"].clone(),
    );
    timm.insert(
        "pre_logits.fc2.weight".into(),
        tv["classifier.3.weight"]
            .reshape((4096, 4096, 1, 1))
            .unwrap(),
    );
    timm.insert(
        "pre_logits.fc2.bias".into(),
        tv["classifier.3.bias"].clone(),
    );
    timm.insert("head.fc.weight".into(), tv["classifier.6.weight"].clone());
    timm.insert("head.fc.bias".into(), tv["classifier.6.bias"].clone());

    let x = Tensor::rand(-1f32, 1.0, (1, 3, 224, 224), &dev).unwrap();
    let a = Backbone::load(
        Architecture::Vgg16,
        VarBuilder::from_tensors(tv, DType::F32, &dev),
    )
    .unwrap();
    let b = Backbone::load(
        Architecture::Vgg16,
        VarBuilder::from_tensors(timm, DType::F32, &dev),
    )
    .unwrap();
    let fa: Vec<Vec<f32>> = a.features(&x).unwrap().to_vec2().unwrap();
    let fb: Vec<Vec<f32>> = b.features(&x).unwrap().to_vec2().unwrap();
    assert_eq!(fa[0].len(), 4096);
    assert!(
        max_abs(&fa) > 0.0,
        "fc7 is all zeros: the comparison proves nothing"
    );
    assert!(max_abs_diff(&fa, &fb) < 1e-5);
    let la: Vec<Vec<f32>> = a
        .logits(&a.features(&x).unwrap())
        .unwrap()
        .unwrap()
        .to_vec2()
        .unwrap();
    let lb: Vec<Vec<f32>> = b
        .logits(&b.features(&x).unwrap())
        .unwrap()
        .unwrap()
        .to_vec2()
        .unwrap();
    assert!(max_abs_diff(&la, &lb) < 1e-5);
}

#[test]
fn fasttext_vec_mean_sum_and_oov() {
    let dir = tempdir("fasttext");
    std::fs::copy(fixture("vectors/tiny.vec"), dir.join("tiny.vec")).unwrap();
    let mean = TextEncoder::load(&dir, &TextOptions::default(), &Device::Cpu).unwrap();
    let rows: Vec<Vec<f32>> = mean
        .encode(&["The cat", "sat, unknownword!", "qqq zzz", ""])
        .unwrap()
        .to_vec2()
        .unwrap();
    // .vec files keep case; "The" is unknown, the first "the" row wins over the duplicate
    assert_eq!(rows[0], vec![0.0, 2.0, 0.0]);
    assert_eq!(rows[1], vec![0.0, 0.0, 4.0]);
    assert_eq!(rows[2], vec![0.0, 0.0, 0.0], "no known word: zero vector");
    assert_eq!(rows[3], vec![0.0, 0.0, 0.0]);
    let sum = TextEncoder::load(
        &dir,
        &TextOptions {
            pooling: Some(Pooling::Sum),
            ..Default::default()
        },
        &Device::Cpu,
    )
    .unwrap();
    let rows: Vec<Vec<f32>> = sum.encode(&["the cat cat"]).unwrap().to_vec2().unwrap();
    assert_eq!(rows[0], vec![1.0, 4.0, 0.0]);
    assert!(TextEncoder::load(
        &dir,
        &TextOptions {
            pooling: Some(Pooling::Cls),
            ..Default::default()
        },
        &Device::Cpu
    )
    .is_err());
}

#[test]
fn glove_kit_vectors_are_the_published_ones() {
    let enc = TextEncoder::load(
        &kit_model("glove-6b-50d"),
        &TextOptions::default(),
        &Device::Cpu,
    )
    .unwrap();
    let rows: Vec<Vec<f32>> = enc
        .encode(&["The", "the cat.", "xyzzyplugh"])
        .unwrap()
        .to_vec2()
        .unwrap();
    // GloVe 6B 50d, first values of "the" as published in glove.6B.50d.txt
    assert_eq!(&rows[0][..4], &[0.418, 0.24968, -0.41242, 0.1217]);
    assert_eq!(rows[0].len(), 50);
    // "the cat." = mean of "the", "cat" and "." (all in vocabulary)
    let parts: Vec<Vec<f32>> = enc.encode(&["the", "cat", "."]).unwrap().to_vec2().unwrap();
    for d in 0..50 {
        let expected = (parts[0][d] + parts[1][d] + parts[2][d]) / 3.0;
        assert!((rows[1][d] - expected).abs() < 1e-6);
    }
    assert!(rows[2].iter().all(|&x| x == 0.0));
}
