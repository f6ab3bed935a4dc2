//! Text cleaning that the reference tokenizers do in Python before tokenizing.
//!
//! open_clip (`open_clip.tokenizer`, `clean="lower"`): `ftfy.fix_text`, `html.unescape` twice,
//! whitespace runs to one space, strip, lower case. ftfy's deterministic fixes are here (C1
//! controls read as Windows-1252, Latin ligatures, full- and half-width forms, curly quotes, ANSI
//! escapes, control characters, NFC, HTML entities when the text has no `<`); its mojibake repair
//! (`fix_encoding`, a statistical guess over the whole text) is not, so "cafÃ©" stays as written.
//! tests/it/clip_tokenizer.rs counts what that costs on its few hundred strings.
//!
//! SigLIP (transformers' `SiglipTokenizer.canonicalize_text`): lower case, ASCII punctuation
//! removed, whitespace runs to one space, strip.

use unicode_normalization::UnicodeNormalization;

/// open_clip's `_clean_lower`.
pub fn open_clip(text: &str) -> String {
    let fixed = ftfy(text);
    let unescaped = unescape(&unescape(&fixed));
    whitespace_clean(&unescaped).to_lowercase()
}

/// SiglipTokenizer's `canonicalize_text` (`do_lower_case` true, nothing kept).
pub fn siglip(text: &str) -> String {
    let lower = text.to_lowercase();
    let kept: String = lower
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    whitespace_clean(&kept)
}

/// Python's `" ".join(text.split())`: `str.split()` also splits on U+001C..U+001F.
fn whitespace_clean(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn unescape(text: &str) -> String {
    if text.contains('&') {
        htmlize::unescape(text).into_owned()
    } else {
        text.to_string()
    }
}

/// ftfy 6's `fix_text` without `fix_encoding`, repeated until nothing changes, as ftfy does.
fn ftfy(text: &str) -> String {
    let mut text = text.to_string();
    loop {
        let before = text.clone();
        if !text.contains('<') {
            text = unescape(&text);
        }
        // escapes first: their ESC is a control character the per-character pass removes (ftfy
        // removes escapes before control characters, and its earlier fixes never touch them)
        text = remove_ansi_escapes(&text)
            .chars()
            .flat_map(|c| fix_char(c).into_iter().flatten())
            .collect();
        text = text.nfc().collect();
        if text == before {
            return text;
        }
    }
}

/// One character through ftfy's per-character fixes, in its order: C1 controls, ligatures,
/// character width, curly quotes, control characters (removed: `None`).
fn fix_char(c: char) -> Option<Vec<char>> {
    let code = c as u32;
    if (0x80..=0x9f).contains(&code) {
        return Some(vec![windows_1252(code as u8)]);
    }
    if let Some(s) = ligature(c) {
        return Some(s.chars().collect());
    }
    if c == '\u{3000}' {
        return Some(vec![' ']);
    }
    if (0xff01..0xfff0).contains(&code) {
        return Some(c.to_string().nfkc().collect());
    }
    match c {
        '\u{2bc}' | '\u{2018}'..='\u{201b}' => return Some(vec!['\'']),
        '\u{201c}'..='\u{201f}' => return Some(vec!['"']),
        _ => {}
    }
    let control = matches!(code, 0x00..=0x08 | 0x0b | 0x0e..=0x1f | 0x7f | 0x206a..=0x206f | 0xfeff | 0xfff9..=0xfffc);
    (!control).then(|| vec![c])
}

/// ftfy's `LIGATURES`: Latin typographic ligatures and legacy digraphs.
fn ligature(c: char) -> Option<&'static str> {
    Some(match c {
        'Ĳ' => "IJ",
        'ĳ' => "ij",
        'ŉ' => "ʼn",
        'Ǳ' => "DZ",
        'ǲ' => "Dz",
        'ǳ' => "dz",
        'Ǆ' => "DŽ",
        'ǅ' => "Dž",
        'ǆ' => "dž",
        'Ǉ' => "LJ",
        'ǈ' => "Lj",
        'ǉ' => "lj",
        'Ǌ' => "NJ",
        'ǋ' => "Nj",
        'ǌ' => "nj",
        'ﬀ' => "ff",
        'ﬁ' => "fi",
        'ﬂ' => "fl",
        'ﬃ' => "ffi",
        'ﬄ' => "ffl",
        'ﬅ' => "ſt",
        'ﬆ' => "st",
        _ => return None,
    })
}

/// A C1 control read as the Windows-1252 byte it most likely was (ftfy's `fix_c1_controls`);
/// the five bytes Windows-1252 leaves undefined stay as they are.
fn windows_1252(b: u8) -> char {
    const HIGH: [u16; 32] = [
        0x20ac, 0x81, 0x201a, 0x192, 0x201e, 0x2026, 0x2020, 0x2021, 0x2c6, 0x2030, 0x160, 0x2039,
        0x152, 0x8d, 0x17d, 0x8f, 0x90, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
        0x2dc, 0x2122, 0x161, 0x203a, 0x153, 0x9d, 0x17e, 0x178,
    ];
    char::from_u32(HIGH[(b - 0x80) as usize] as u32).expect("a valid scalar")
}

/// ftfy's `remove_terminal_escapes`: `ESC [ digits-and-semicolons letter`.
fn remove_ansi_escapes(text: &str) -> String {
    if !text.contains('\u{1b}') {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\u{1b}' && chars.get(i + 1) == Some(&'[') {
            let mut j = i + 2;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == ';') {
                j += 1;
            }
            if j < chars.len() && chars[j].is_ascii_alphabetic() {
                i = j + 1;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_clip_cleaning_follows_ftfy_and_html_unescape() {
        assert_eq!(open_clip("  Tom &amp;amp; Jerry  "), "tom & jerry");
        assert_eq!(open_clip("ﬁne １２３"), "fine 123");
        assert_eq!(open_clip("“curly” ‘quotes’"), "\"curly\" 'quotes'");
        assert_eq!(open_clip("\u{1b}[31mred\u{1b}[0m text"), "red text");
        assert_eq!(open_clip("e\u{301}"), "é");
        // with a '<' ftfy leaves entities alone, then html.unescape decodes them twice
        assert_eq!(open_clip("<b> &amp;lt;"), "<b> <");
    }

    #[test]
    fn siglip_canonicalisation_drops_ascii_punctuation() {
        assert_eq!(siglip("  Hello, World!  It's 3.14 "), "hello world its 314");
        assert_eq!(siglip("café…"), "café…");
    }
}
