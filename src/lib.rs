//! xmodal: cross-modal retrieval. Modules follow the data flow:
//! `kit` (model files on disk) → `encode` (pixels and words become vectors) → … → `cli` (commands).

pub mod cli;
pub mod data;
pub mod device;
pub mod encode;
pub mod eval;
pub mod features;
pub mod fsutil;
pub mod heads;
pub mod index;
pub mod kit;
pub mod library;
pub mod report;
pub mod rng;
pub mod serve;
pub mod simd;
pub mod train;
pub mod vectors;
