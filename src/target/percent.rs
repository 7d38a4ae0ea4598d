//! Percent-encoding (RFC 3986 section 2.1) for the three places chunkwire writes URLs:
//! the request-target built from a URL, a `Location` that holds raw bytes, and a file name
//! appended as a path segment. Plus the decoding of user names and passwords.
//!
//! Encoding never decodes: a valid `%XX` already in a URL stays exactly as written (case
//! included), since decoding `%2F` into `/` would change which resource is meant.

const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";

/// RFC 3986 section 2.3: `unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"`.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// What a path may hold unencoded, `%` aside (RFC 3986 section 3.3):
///
/// ```text
/// path-abempty = *( "/" segment )
/// segment      = *pchar
/// pchar        = unreserved / pct-encoded / sub-delims / ":" / "@"
/// sub-delims   = "!" / "$" / "&" / "'" / "(" / ")" / "*" / "+" / "," / ";" / "="
/// ```
pub(super) fn is_path_byte(byte: u8) -> bool {
    is_unreserved(byte) || b"!$&'()*+,;=:@/".contains(&byte)
}

/// What a query may hold unencoded, `%` aside (RFC 3986 section 3.4):
/// `query = *( pchar / "/" / "?" )`.
pub(super) fn is_query_byte(byte: u8) -> bool {
    is_path_byte(byte) || byte == b'?'
}

/// True when `bytes[at]` starts a `%XX` triplet.
fn is_triplet(bytes: &[u8], at: usize) -> bool {
    bytes.get(at) == Some(&b'%')
        && bytes.get(at + 1).is_some_and(u8::is_ascii_hexdigit)
        && bytes.get(at + 2).is_some_and(u8::is_ascii_hexdigit)
}

fn push_encoded(out: &mut String, byte: u8) {
    out.push('%');
    out.push(char::from(UPPER_HEX[usize::from(byte >> 4)]));
    out.push(char::from(UPPER_HEX[usize::from(byte & 0xf)]));
}

/// Encodes every byte `keep` refuses, except the `%` of a valid `%XX`; a `%` that starts
/// no triplet (`100%`) becomes `%25`, so the result is always a valid URI component.
pub(super) fn encode_where_needed(text: &str, keep: fn(u8) -> bool) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    for (at, &byte) in bytes.iter().enumerate() {
        if keep(byte) || is_triplet(bytes, at) {
            out.push(char::from(byte));
        } else {
            push_encoded(&mut out, byte);
        }
    }
    out
}

/// Encodes only the bytes above ASCII. Servers put raw UTF-8 (or Latin-1) in `Location`;
/// this makes it a string the URI rules can work on, keeping every ASCII byte's meaning.
pub(super) fn encode_non_ascii(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        if byte.is_ascii() {
            out.push(char::from(byte));
        } else {
            push_encoded(&mut out, byte);
        }
    }
    out
}

/// Encodes all but the unreserved bytes, so `name` becomes one path segment whatever it
/// holds (`/`, `?`, `#`, `%`, `=` included), as curl does for `-T file URL/`. A name that is
/// exactly `.` or `..` has its dots encoded too, or it would be removed as a dot segment.
pub(super) fn encode_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let is_dot_segment = name == "." || name == "..";
    for byte in name.bytes() {
        if is_unreserved(byte) && !is_dot_segment {
            out.push(char::from(byte));
        } else {
            push_encoded(&mut out, byte);
        }
    }
    out
}

/// Decodes each valid `%XX`; any other `%` is kept as it is.
pub(super) fn decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if is_triplet(bytes, at) {
            let hex = std::str::from_utf8(&bytes[at + 1..at + 3]).unwrap_or_default();
            out.push(u8::from_str_radix(hex, 16).unwrap_or_default());
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_query_encoding() {
        let cases = [
            ("/a b", is_path_byte as fn(u8) -> bool, "/a%20b"),
            ("/caf\u{e9}", is_path_byte, "/caf%C3%A9"),
            ("/%41%2f", is_path_byte, "/%41%2f"),
            ("/100%", is_path_byte, "/100%25"),
            ("/%zz%4", is_path_byte, "/%25zz%254"),
            (
                "/a\"<>\\^`{|}[]",
                is_path_byte,
                "/a%22%3C%3E%5C%5E%60%7B%7C%7D%5B%5D",
            ),
            ("/!$&'()*+,;=:@-._~", is_path_byte, "/!$&'()*+,;=:@-._~"),
            ("/?", is_path_byte, "/%3F"),
            ("a=1&b=/?x", is_query_byte, "a=1&b=/?x"),
            ("q=a b", is_query_byte, "q=a%20b"),
        ];
        for (text, keep, expected) in cases {
            assert_eq!(encode_where_needed(text, keep), expected, "{text}");
        }
    }

    #[test]
    fn non_ascii_only() {
        assert_eq!(
            encode_non_ascii(b"/a b\xc3\xa9\xff?%41"),
            "/a b%C3%A9%FF?%41"
        );
    }

    #[test]
    fn decoding_keeps_what_is_not_a_triplet() {
        let cases: [(&str, &[u8]); 5] = [
            ("p%40ss", b"p@ss"),
            ("%3a%3A", b"::"),
            ("100%", b"100%"),
            ("%zz", b"%zz"),
            ("%C3%A9", "\u{e9}".as_bytes()),
        ];
        for (text, expected) in cases {
            assert_eq!(decode(text), expected, "{text}");
        }
    }
}
