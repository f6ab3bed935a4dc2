//! Which pairs of a batch may serve as each other's negatives.
//!
//! Two pairs are no negatives of each other when they share an image, or when their captions
//! are the same text: a caption written for another picture in exactly the positive's words
//! describes this picture as well as its own caption does. In the generated benchmark a third of
//! the training captions ("a large orange square in the middle") belong to more than one scene;
//! the hardest-negative loss would otherwise pick such a twin (same text embedding, so it scores
//! exactly like the positive) and push an image away from its own description.

/// One key per caption; equal keys mean the same text after case and spacing are ignored.
/// Empty captions (unknown text) each get their own key.
pub fn caption_keys(captions: &[String]) -> Vec<u32> {
    let mut ids = std::collections::HashMap::new();
    captions
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let text = c
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .trim_end_matches('.')
                .to_lowercase();
            if text.is_empty() {
                // distinct from every text key (those count up from 0 below captions.len())
                return (captions.len() + i) as u32;
            }
            let next = ids.len() as u32;
            *ids.entry(text).or_insert(next)
        })
        .collect()
}

/// `[b × b]`, row-major: `true` where pairs `i` and `j` share an image or a caption text
/// (always on the diagonal).
pub fn not_negatives(image_rows: &[u32], text_rows: &[u32], caption_keys: &[u32]) -> Vec<bool> {
    let key = |t: u32| caption_keys[t as usize];
    image_rows
        .iter()
        .zip(text_rows)
        .flat_map(|(&ia, &ta)| {
            image_rows
                .iter()
                .zip(text_rows)
                .map(move |(&ib, &tb)| ia == ib || key(ta) == key(tb))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_or_same_image_is_no_negative() {
        let captions: Vec<String> = [
            "a red circle",
            "A red  circle.",
            "a blue square",
            "",
            "",
            "a red circle left of a square",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let keys = caption_keys(&captions);
        assert_eq!(
            keys[0], keys[1],
            "case, spacing and a final stop are ignored"
        );
        assert_ne!(keys[0], keys[2]);
        assert_ne!(
            keys[3], keys[4],
            "empty captions are unknown text, not equal text"
        );
        assert!(keys[..3]
            .iter()
            .chain(&keys[5..])
            .all(|k| *k != keys[3] && *k != keys[4]));
        assert_ne!(keys[0], keys[5]);
        // pairs: (image 0, caption 0), (image 1, caption 1), (image 1, caption 2), (image 2, caption 3)
        let same = not_negatives(&[0, 1, 1, 2], &[0, 1, 2, 3], &keys);
        #[rustfmt::skip]
        let want = [
            true, true, false, false, // 0 and 1: one text
            true, true, true, false,  // 1 and 2: one image
            false, true, true, false,
            false, false, false, true,
        ];
        assert_eq!(same, want);
    }
}
