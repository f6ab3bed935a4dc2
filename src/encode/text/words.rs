//! Word splitting for static word vectors, close to how GloVe's corpus was tokenised: lowercased
//! runs of letters and digits, with each punctuation mark a token of its own.

pub fn split_words(text: &str, lowercase: bool) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    for ch in text.chars() {
        if ch.is_alphanumeric() {
            if lowercase {
                current.extend(ch.to_lowercase());
            } else {
                current.push(ch);
            }
            continue;
        }
        if !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        if !ch.is_whitespace() && !ch.is_control() {
            words.push(ch.to_string());
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::split_words;

    #[test]
    fn splits_punctuation_and_lowercases() {
        assert_eq!(
            split_words("A Dog, running!", true),
            ["a", "dog", ",", "running", "!"]
        );
        assert_eq!(split_words("  ", true), Vec::<String>::new());
        assert_eq!(split_words("Café über", true), ["café", "über"]);
        assert_eq!(split_words("Café", false), ["Café"]);
    }
}
