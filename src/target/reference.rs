//! RFC 3986 section 5.2: turning a URI reference (a `Location` value, say) into the
//! absolute URI it stands for, relative to a base.
//!
//! This is the RFC's algorithm on strings, with nothing added: no percent-encoding, no
//! validation of hosts or ports. What chunkwire accepts as a target is decided afterwards,
//! by parsing the result ([`super::Target::parse`]). Parsing is strict (section 5.2.2):
//! `http:g` has a scheme, so it is absolute and stays `http:g`.

/// The five components of a URI reference, split as RFC 3986 Appendix B's regular
/// expression does (section 5.2.1's "pre-parse"):
///
/// ```text
/// ^(([^:/?#]+):)?(//([^/?#]*))?([^?#]*)(\?([^#]*))?(#(.*))?
/// ```
///
/// `None` is "undefined" in the RFC's words, which differs from empty: `http://h/?` has an
/// empty query, `http://h/` none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Components<'a> {
    pub(super) scheme: Option<&'a str>,
    pub(super) authority: Option<&'a str>,
    pub(super) path: &'a str,
    pub(super) query: Option<&'a str>,
    pub(super) fragment: Option<&'a str>,
}

/// RFC 3986 section 3.1: `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
///
/// Appendix B's expression takes anything before the first `:` as a scheme; requiring the
/// grammar here means `1a:b` or `a b:c` are read as paths, and a reference that is not a
/// valid URI is then refused by the parser with a message about its path or its missing
/// scheme rather than named as an odd scheme.
fn is_scheme(text: &str) -> bool {
    let mut bytes = text.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Splits a reference into its components (RFC 3986 section 5.2.1 and Appendix B).
pub(super) fn split(reference: &str) -> Components<'_> {
    // The fragment starts at the first '#', the query at the first '?' before it: a '?'
    // inside the fragment belongs to the fragment.
    let (rest, fragment) = match reference.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (reference, None),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let (scheme, rest) = match rest.split_once(':') {
        Some((scheme, rest)) if is_scheme(scheme) => (Some(scheme), rest),
        _ => (None, rest),
    };
    let (authority, path) = match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find('/').unwrap_or(after.len());
            (Some(&after[..end]), &after[end..])
        }
        None => (None, rest),
    };
    Components {
        scheme,
        authority,
        path,
        query,
        fragment,
    }
}

/// RFC 3986 section 5.2.2 (strict): the target URI of `reference` against `base`, which
/// must be absolute (have a scheme), recomposed as section 5.3 says.
pub(super) fn resolve(base: &Components<'_>, reference: &Components<'_>) -> String {
    let scheme;
    let authority;
    let path;
    let query;
    if let Some(own_scheme) = reference.scheme {
        scheme = own_scheme;
        authority = reference.authority;
        path = remove_dot_segments(reference.path);
        query = reference.query;
    } else {
        scheme = base.scheme.unwrap_or_default();
        if reference.authority.is_some() {
            authority = reference.authority;
            path = remove_dot_segments(reference.path);
            query = reference.query;
        } else {
            authority = base.authority;
            if reference.path.is_empty() {
                path = base.path.to_owned();
                query = reference.query.or(base.query);
            } else {
                path = if reference.path.starts_with('/') {
                    remove_dot_segments(reference.path)
                } else {
                    remove_dot_segments(&merge(base, reference.path))
                };
                query = reference.query;
            }
        }
    }
    recompose(&Components {
        scheme: Some(scheme),
        authority,
        path: &path,
        query,
        fragment: reference.fragment,
    })
}

/// RFC 3986 section 5.2.3: a relative path appended to the base path's "directory" (all
/// of it up to and including its last `/`).
fn merge(base: &Components<'_>, reference_path: &str) -> String {
    if base.authority.is_some() && base.path.is_empty() {
        return format!("/{reference_path}");
    }
    let directory_end = base.path.rfind('/').map_or(0, |slash| slash + 1);
    format!("{}{reference_path}", &base.path[..directory_end])
}

/// RFC 3986 section 5.2.4: removes the `.` and `..` segments of a path, step by step as
/// the RFC writes it (its rules A to E), so each branch can be checked against the text.
pub(super) fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut output = String::with_capacity(path.len());
    while !input.is_empty() {
        if let Some(rest) = input
            .strip_prefix("../")
            .or_else(|| input.strip_prefix("./"))
        {
            // A: a leading "../" or "./" goes.
            input = rest;
        } else if input.starts_with("/./") {
            // B: "/./" becomes "/" ...
            input = &input[2..];
        } else if input == "/." {
            // ... and so does a final "/.".
            input = "/";
        } else if input.starts_with("/../") {
            // C: "/../" becomes "/" and takes the last output segment with it ...
            input = &input[3..];
            remove_last_segment(&mut output);
        } else if input == "/.." {
            // ... as does a final "/..".
            input = "/";
            remove_last_segment(&mut output);
        } else if input == "." || input == ".." {
            // D: a path that is only dots goes.
            input = "";
        } else {
            // E: the first segment, with its leading "/" if any, moves to the output.
            let start = usize::from(input.starts_with('/'));
            let end = input[start..]
                .find('/')
                .map_or(input.len(), |slash| start + slash);
            output.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    output
}

/// Rule C's "removing the last segment and its preceding '/' (if any)".
fn remove_last_segment(output: &mut String) {
    let cut = output.rfind('/').unwrap_or(0);
    output.truncate(cut);
}

/// RFC 3986 section 5.3: the components back into one string.
pub(super) fn recompose(components: &Components<'_>) -> String {
    let mut out = String::new();
    if let Some(scheme) = components.scheme {
        out.push_str(scheme);
        out.push(':');
    }
    if let Some(authority) = components.authority {
        out.push_str("//");
        out.push_str(authority);
    }
    out.push_str(components.path);
    if let Some(query) = components.query {
        out.push('?');
        out.push_str(query);
    }
    if let Some(fragment) = components.fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_follows_appendix_b() {
        let cases = [
            (
                "http://www.ics.uci.edu/pub/ietf/uri/#Related",
                (
                    Some("http"),
                    Some("www.ics.uci.edu"),
                    "/pub/ietf/uri/",
                    None,
                    Some("Related"),
                ),
            ),
            ("g?y#s?t", (None, None, "g", Some("y"), Some("s?t"))),
            ("//g", (None, Some("g"), "", None, None)),
            ("?", (None, None, "", Some(""), None)),
            ("g:h", (Some("g"), None, "h", None, None)),
            // Not a scheme by the section 3.1 grammar: a path.
            ("1a:b", (None, None, "1a:b", None, None)),
            ("a/b:c", (None, None, "a/b:c", None, None)),
            ("", (None, None, "", None, None)),
        ];
        for (reference, (scheme, authority, path, query, fragment)) in cases {
            assert_eq!(
                split(reference),
                Components {
                    scheme,
                    authority,
                    path,
                    query,
                    fragment
                },
                "{reference}"
            );
            assert_eq!(recompose(&split(reference)), reference, "{reference}");
        }
    }

    #[test]
    fn remove_dot_segments_follows_section_5_2_4() {
        let cases = [
            // The two walk-throughs in section 5.2.4.
            ("/a/b/c/./../../g", "/a/g"),
            ("mid/content=5/../6", "mid/6"),
            ("/../../up/./x", "/up/x"),
            ("/a/..", "/"),
            ("/a/.", "/a/"),
            ("/a//../b", "/a/b"),
            ("/..g/g../.g/g.", "/..g/g../.g/g."),
            ("..", ""),
            ("", ""),
        ];
        for (path, expected) in cases {
            assert_eq!(remove_dot_segments(path), expected, "{path}");
        }
    }
}
