//! The two kinds of vectors that cross module borders, kept apart by type: what an encoder
//! produces ([`Features`]: what the catalog stores and projection heads read) and what an index
//! holds and searches ([`Embedding`]: a vector projected into one head's space).

/// One item's encoder output (before any head).
#[derive(Debug, Clone, PartialEq)]
pub struct Features(Vec<f32>);

/// One item's vector in a head's space: what indexes store and queries are.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding(Vec<f32>);

macro_rules! vector_type {
    ($t:ident) => {
        impl $t {
            pub fn new(values: Vec<f32>) -> Self {
                Self(values)
            }

            pub fn as_slice(&self) -> &[f32] {
                &self.0
            }

            pub fn into_vec(self) -> Vec<f32> {
                self.0
            }

            pub fn dims(&self) -> usize {
                self.0.len()
            }
        }

        impl From<Vec<f32>> for $t {
            fn from(values: Vec<f32>) -> Self {
                Self(values)
            }
        }
    };
}

vector_type!(Features);
vector_type!(Embedding);
