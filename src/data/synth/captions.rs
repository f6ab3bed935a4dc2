//! Several phrasings per scene: attributes, absolute places and pairwise relations, so captions
//! must be read compositionally ("a red circle left of a blue square" ≠ "a blue circle left of a
//! red square").

use crate::rng::Rng;

use super::scene::{inverse, relation, Object, Place};

pub const CAPTIONS_PER_IMAGE: usize = 5;

fn one(o: &Object, place: Place, rng: &mut Rng) -> Vec<String> {
    let size = *rng.pick(&o.size.words());
    let at = *rng.pick(&place.phrases());
    let (c, s) = (o.colour, o.shape.word());
    vec![
        format!("a {size} {c} {s} {at}"),
        format!("a {c} {s} {at}"),
        format!("there is a {size} {c} {s} {at}"),
        format!("{at} there is a {c} {s}"),
        format!("a {size} {s} coloured {c}"),
        format!("a picture of a {size} {c} {s}"),
        format!("just one {c} {s}"),
    ]
}

fn two(a: &Object, b: &Object, rng: &mut Rng) -> Vec<String> {
    let rel = relation(a, b);
    let (na, nb) = (a.name(), b.name());
    let (sa, sb) = (*rng.pick(&a.size.words()), *rng.pick(&b.size.words()));
    vec![
        format!("a {na} {rel} a {nb}"),
        format!("a {nb} {} a {na}", inverse(rel)),
        format!("a {sa} {na} {rel} a {sb} {nb}"),
        format!("there is a {na} {rel} a {nb}"),
        format!("a {na} and a {nb}"),
        format!("two shapes: a {na} and a {nb}"),
        format!("a {nb} next to a {na}"),
    ]
}

fn three(a: &Object, b: &Object, c: &Object) -> Vec<String> {
    let (na, nb, nc) = (a.name(), b.name(), c.name());
    vec![
        format!("a {na}, a {nb} and a {nc}"),
        format!("three shapes: a {na}, a {nb} and a {nc}"),
        format!("a {na} {} a {nb}, and a {nc}", relation(a, b)),
        format!("a {nc} with a {na} and a {nb}"),
        format!("a {nb} {} a {nc}, and a {na}", relation(b, c)),
        format!("a {nc} {} a {na} and a {nb}", relation(c, a)),
    ]
}

/// Five distinct captions for a scene (`place` is the single object's place).
pub fn captions(objects: &[Object], place: Place, rng: &mut Rng) -> Vec<String> {
    let mut options = match objects {
        [a] => one(a, place, rng),
        [a, b] => two(a, b, rng),
        [a, b, c] => three(a, b, c),
        _ => unreachable!("scenes hold 1 to 3 objects"),
    };
    options.dedup();
    rng.shuffle(&mut options);
    options.truncate(CAPTIONS_PER_IMAGE);
    options.iter().map(|c| with_articles(c)).collect()
}

/// "a orange star" → "an orange star".
fn with_articles(caption: &str) -> String {
    let words: Vec<&str> = caption.split(' ').collect();
    let mut out = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        let next_vowel = words
            .get(i + 1)
            .and_then(|n| n.chars().next())
            .is_some_and(|ch| "aeiou".contains(ch));
        out.push(if *w == "a" && next_vowel { "an" } else { w });
    }
    out.join(" ")
}
