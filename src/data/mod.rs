//! Data in: images and captions from datasets (Flickr30k, COCO, JSONL), the generated scene
//! benchmark, the demo gallery of real photos, and the catalog that records them all.

pub mod catalog;
pub mod dir;
pub mod filter;
pub mod ids;
pub mod ingest;
pub mod metadata;
pub mod synth;

pub use catalog::{Catalog, CatalogError};
pub use dir::DataDir;
pub use ids::{CaptionKey, ImageId, InvalidId, Split};
