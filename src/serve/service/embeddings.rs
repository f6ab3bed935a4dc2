//! Embeddings for clients' own stores: texts and images projected into one space, the vectors
//! its indexes hold and its searches score (a caption's vector · an image's vector is the score
//! caption → image search gives that image).

use axum::body::Bytes;

use super::{Service, ServiceError};
use crate::vectors::Embedding;

/// One input of an embeddings request.
pub enum EmbedInput {
    Text(String),
    /// Encoded image bytes (JPEG, PNG, WebP), decoded under the usual limits.
    Image(Bytes),
}

/// The vectors of one request, in input order.
pub struct Embedded {
    pub vectors: Vec<Embedding>,
    /// Tokens the texts became (images count none).
    pub tokens: usize,
    /// The space's name (what `model` chooses).
    pub model: String,
}

impl Service {
    /// Every input's vector in the space `model` names (default: the first). The texts go to the
    /// text encoder as one batch, the images in batches of the engine's image batch size, both
    /// queued beside concurrent search traffic.
    pub async fn embed(
        &self,
        model: Option<&str>,
        inputs: Vec<EmbedInput>,
    ) -> Result<Embedded, ServiceError> {
        let space = self.space(model)?;
        let mut texts = Vec::new();
        let mut images = Vec::new();
        // where each input's vector comes from: (is_text, position in its side)
        let order: Vec<(bool, usize)> = inputs
            .into_iter()
            .map(|input| match input {
                EmbedInput::Text(t) => {
                    texts.push(t);
                    (true, texts.len() - 1)
                }
                EmbedInput::Image(b) => {
                    images.push(b);
                    (false, images.len() - 1)
                }
            })
            .collect();
        let tokens = if texts.is_empty() {
            0
        } else {
            self.engine.count_tokens(texts.clone()).await?.iter().sum()
        };
        let (text_features, image_features) =
            tokio::try_join!(self.engine.encode_texts(texts), async {
                if images.is_empty() {
                    Ok(Vec::new())
                } else {
                    self.engine.encode_images(images).await
                }
            })?;
        let vectors = order
            .into_iter()
            .map(|(text, i)| {
                if text {
                    space.project_text(&text_features[i])
                } else {
                    space.project_image(&image_features[i])
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Embedded {
            vectors,
            tokens,
            model: space.name.clone(),
        })
    }

    /// The searchable spaces, by the name requests use, with what each is.
    pub fn spaces(&self) -> impl Iterator<Item = (&str, &str)> {
        self.spaces
            .iter()
            .map(|s| (s.name.as_str(), s.model.as_str()))
    }
}
