//! HTTP handlers: validation, JSON and status codes; everything else is delegated.

pub mod duplicates;
pub mod embeddings;
pub mod images;
pub mod ops;
pub mod search;
pub mod web;
