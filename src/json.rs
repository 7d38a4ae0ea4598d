//! JSON string escaping (RFC 8259 section 7), shared by everything chunkwire writes as JSON:
//! the `--trace-json` lines, the sink's report and the CLI's `-w '%{json}'`.
//!
//! Written by hand rather than with serde_json: chunkwire writes JSON and never reads it,
//! the objects are flat and their keys fixed, and escaping a string is the only part that
//! has to be got right; the tests check that part against serde_json, which is a
//! dev-dependency only, so the library stays small.

use std::fmt::Write as _;

/// Appends `text` as a JSON string, quotes included.
pub fn push_string(out: &mut String, text: &str) {
    out.push('"');
    push_str_content(out, text);
    out.push('"');
}

/// Appends `bytes` as a JSON string, quotes included. Valid UTF-8 passes through; each
/// stretch that is not valid UTF-8 becomes U+FFFD, the replacement character, as
/// [`String::from_utf8_lossy`] has it (JSON strings are Unicode text: a byte has no escape
/// of its own).
pub fn push_bytes(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        push_str_content(out, chunk.valid());
        if !chunk.invalid().is_empty() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
    out.push('"');
}

/// The inside of a JSON string: `"` and `\` escaped, every control character (C0, DEL)
/// written as an escape, everything else as it is.
fn push_str_content(out: &mut String, text: &str) {
    let mut plain = 0;
    for (at, c) in text.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            c if c < ' ' || c == '\u{7f}' => "",
            _ => continue,
        };
        out.push_str(&text[plain..at]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push_str(escape);
        }
        plain = at + c.len_utf8();
    }
    out.push_str(&text[plain..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parsed(json: &str) -> String {
        match serde_json::from_str::<serde_json::Value>(json) {
            Ok(serde_json::Value::String(s)) => s,
            other => panic!("{json} is not a JSON string: {other:?}"),
        }
    }

    #[test]
    fn escapes_what_json_requires() {
        let mut out = String::new();
        push_string(&mut out, "a\"b\\c\n\r\t\u{0}\u{1f}\u{7f}é日\u{1F600}");
        assert_eq!(
            out,
            "\"a\\\"b\\\\c\\n\\r\\t\\u0000\\u001f\\u007fé日\u{1F600}\""
        );
        let mut out = String::new();
        push_bytes(&mut out, b"ok\xff\xc3(\xe2\x82");
        assert_eq!(out, "\"ok\u{FFFD}\u{FFFD}(\u{FFFD}\"");
        assert_eq!(parsed(&out), "ok\u{FFFD}\u{FFFD}(\u{FFFD}");
    }

    proptest! {
        #[test]
        fn any_string_round_trips_through_serde_json(text in any::<String>()) {
            let mut out = String::new();
            push_string(&mut out, &text);
            prop_assert_eq!(parsed(&out), text);
        }

        #[test]
        fn any_bytes_parse_as_their_lossy_text(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut out = String::new();
            push_bytes(&mut out, &bytes);
            let expected = String::from_utf8_lossy(&bytes).into_owned();
            prop_assert_eq!(parsed(&out), expected);
        }

        #[test]
        fn no_raw_control_character_is_left(text in any::<String>()) {
            let mut out = String::new();
            push_string(&mut out, &text);
            prop_assert!(!out.chars().any(|c| c < ' ' || c == '\u{7f}'), "{}", out);
        }
    }
}
