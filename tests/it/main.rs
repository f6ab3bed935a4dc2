//! Every integration test in one binary: one link on 2 cores instead of one per file (the
//! files were separate test targets until the 20th). Modules are the former files; `common`
//! holds the helpers they share (a real server on a free port, the model kit, fixtures).

mod common;

mod browser;
mod cli_models;
mod clip_parity;
mod clip_search;
mod clip_tokenizer;
mod config;
mod demo;
mod duplicates;
mod embeddings;
mod encoders_loading;
mod encoders_parity;
mod eval_metrics;
mod extract;
mod generic_path;
mod image_limits;
mod import;
mod index;
mod ingest;
mod library;
mod onnx_models;
mod photo_filters;
mod postgres_catalog;
mod postgres_faults;
mod postgres_replicas;
mod query_terms;
mod report;
mod serve_api;
mod serve_crash;
mod storage_faults;
mod train_heads;
mod zero_shot;
