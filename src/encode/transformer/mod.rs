//! What the transformer encoders share (BERT in `text/`, the CLIP family in `clip/`): dense
//! layers in f32 or int8, the attention and activation kernels, and packing a padded batch down
//! to its real tokens.

mod attention;
mod dense;
pub mod int8;
pub mod kernels;
mod packing;
mod panels;

pub use attention::self_attention;
pub use dense::Dense;
pub use packing::Packing;
