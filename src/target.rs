//! The upload target: a URL turned into what the connection and the request head need
//! (scheme, host to resolve, port, `Host` header value, request-target, credentials), and
//! the RFC 3986 reference resolution that turns a `Location` into the next target.
//!
//! The parser is written here, not borrowed, so that each refusal can say what is wrong
//! (`http::Uri` answers every problem with one "invalid URI") and so that it can encode
//! what a strict URI parser refuses. [`Target::parse`] lists what is encoded, removed and
//! refused; the design decisions are explained there and below, since this module is
//! private and its items are reached through `Target`.
//!
//! # Credentials
//!
//! `http://user:password@host/` is accepted, as curl accepts it: the userinfo is
//! percent-decoded into [`Target::credentials`] and sent as HTTP Basic authentication
//! ([`Target::basic_authorization`]). Credentials belong to the origin (scheme, host,
//! port) of the URL they came with: [`Target::redirect`] keeps them only for a target on
//! the same origin, as curl does without `--location-trusted`. The password is never
//! shown: `Debug` masks it, and every URL in an error is passed through
//! [`redact_userinfo`] (`http://user:***@host/`).

mod credentials;
mod percent;
mod reference;

pub use credentials::{Credentials, redact_userinfo};

use crate::error::RequestError;

/// The URL schemes chunkwire speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain TCP.
    Http,
    /// TLS.
    Https,
}

impl Scheme {
    /// The port used when the URL names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// The scheme as written in a URL, lower case.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A parsed, validated upload target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The scheme.
    pub scheme: Scheme,
    /// The host to resolve: a lowercased name, an IPv4 literal, or an IPv6 literal without
    /// brackets.
    pub host: String,
    /// The port, explicit or the scheme's default.
    pub port: u16,
    /// The `Host` header value: host, brackets for IPv6, and the port when it is not the default.
    pub host_header: String,
    /// The request-target in origin form: an absolute path and the query (RFC 9112 section
    /// 3.2.1), percent-encoded and without dot segments.
    pub request_target: String,
    /// The user name and password the URL carried (`http://user:password@host/`), sent
    /// as Basic authentication, and only to this origin: [`Target::redirect`] drops them
    /// for any other. `Debug` masks the password.
    pub credentials: Option<Credentials>,
}

/// The longest URL (or `Location`) accepted, in bytes. Servers commonly refuse request
/// lines of more than 8 KiB; the limit here is wider, so it only catches what is surely a
/// mistake (a file's contents passed as the URL) before it is copied into a request head.
pub const MAX_URL_LEN: usize = 64 * 1024;

/// How much of a refused URL an error message repeats, in characters.
const MAX_URL_IN_MESSAGE: usize = 200;

// Why a URL is refused. Each names one problem; the URL itself is shown beside it.
const EMPTY: &str = "the URL is empty";
const TOO_LONG: &str = "longer than 65536 bytes, the most chunkwire accepts (MAX_URL_LEN)";
const CONTROL_CHARACTER: &str =
    "holds a control character (CR, LF, tab, NUL, DEL ...); percent-encode it";
const NO_SCHEME: &str = "no scheme: expected http://host/path or https://host/path";
const HOST_PORT_WITHOUT_SCHEME: &str =
    "no scheme: this looks like host:port; write http://host:port/path";
const NO_SLASHES: &str = "no host: the scheme must be followed by \"//\" and a host, as in \
     http://host/path";
const EMPTY_HOST: &str = "no host after \"//\"";
const UNCLOSED_BRACKET: &str = "the IPv6 address opened with '[' has no closing ']'";
const NOT_IPV6: &str = "brackets must hold an IPv6 address (zone identifiers are not supported)";
const AFTER_BRACKET: &str = "after the IPv6 address's ']' only \":port\" may follow";
const UNBRACKETED_IPV6: &str = "an IPv6 address must be in brackets, as in http://[::1]:8080/";
const NON_ASCII_HOST: &str = "the host is not ASCII: give an internationalised name in its \
     IDNA form (xn--...)";
const BAD_HOST_CHARACTER: &str =
    "the host holds a character no host name has (letters, digits, '-', '.', '_')";
const BAD_PORT: &str = "the port is not a number from 1 to 65535";
const PORT_ZERO: &str = "port 0 cannot be connected to";
const EMPTY_LOCATION: &str = "the Location is empty";

/// The error for a refused URL: the reason, and the URL without its password, truncated.
fn invalid(url: &str, reason: &'static str) -> RequestError {
    RequestError::InvalidUrl {
        url: shown_in_message(url),
        reason,
    }
}

/// `text` as an error may repeat it: password masked, cut to [`MAX_URL_IN_MESSAGE`].
fn shown_in_message(text: &str) -> String {
    let redacted = redact_userinfo(text);
    let mut shown: String = redacted.chars().take(MAX_URL_IN_MESSAGE).collect();
    if shown.len() < redacted.len() {
        shown.push('…');
    }
    shown
}

/// Whitespace trimmed from around a URL or a `Location`, never kept inside one.
fn is_surrounding_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n' | '\x0c')
}

fn has_control_character(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| b < 0x20 || b == 0x7f)
}

/// What the authority (`[userinfo@]host[:port]`) gives a target.
struct Authority {
    credentials: Option<Credentials>,
    /// Lowercased, without brackets.
    host: String,
    /// Lowercased, with brackets around an IPv6 literal, as in `Host`.
    bracketed_host: String,
    port: u16,
}

/// RFC 3986 section 3.2: `authority = [ userinfo "@" ] host [ ":" port ]`, with the host
/// narrowed to what can be resolved and connected to.
fn parse_authority(url: &str, authority: &str, scheme: Scheme) -> Result<Authority, RequestError> {
    // The last '@', as browsers and curl split: a host cannot hold one, so any earlier
    // '@' is a password's that should have been written %40.
    let (userinfo, host_and_port) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let credentials = match userinfo {
        Some(userinfo) => {
            Credentials::from_userinfo(userinfo).map_err(|reason| invalid(url, reason))?
        }
        None => None,
    };
    let (bracketed_host, port_text) = if let Some(after_bracket) = host_and_port.strip_prefix('[') {
        let close = after_bracket
            .find(']')
            .ok_or_else(|| invalid(url, UNCLOSED_BRACKET))?;
        if after_bracket[..close]
            .parse::<std::net::Ipv6Addr>()
            .is_err()
        {
            return Err(invalid(url, NOT_IPV6));
        }
        let port_text = match &after_bracket[close + 1..] {
            "" => None,
            after => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| invalid(url, AFTER_BRACKET))?,
            ),
        };
        (&host_and_port[..close + 2], port_text)
    } else {
        let (host, port_text) = match host_and_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_and_port, None),
        };
        if port_text.is_some_and(|port| port.contains(':')) {
            return Err(invalid(url, UNBRACKETED_IPV6));
        }
        if host.is_empty() {
            return Err(invalid(url, EMPTY_HOST));
        }
        if !host.is_ascii() {
            return Err(invalid(url, NON_ASCII_HOST));
        }
        let is_host_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
        if !host.bytes().all(is_host_byte) {
            return Err(invalid(url, BAD_HOST_CHARACTER));
        }
        (host, port_text)
    };
    let port = match port_text {
        // RFC 3986 section 3.2.3: an empty port is the scheme's default.
        None | Some("") => scheme.default_port(),
        // Digits only: `u16::from_str` would also take a leading '+'.
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.parse::<u16>().map_err(|_| invalid(url, BAD_PORT))?
        }
        Some(_) => return Err(invalid(url, BAD_PORT)),
    };
    if port == 0 {
        return Err(invalid(url, PORT_ZERO));
    }
    let bracketed_host = bracketed_host.to_ascii_lowercase();
    let host = bracketed_host
        .strip_prefix('[')
        .and_then(|literal| literal.strip_suffix(']'))
        .unwrap_or(&bracketed_host)
        .to_owned();
    Ok(Authority {
        credentials,
        host,
        bracketed_host,
        port,
    })
}

/// True for `localhost:8080/x`: what reads as a scheme is a host followed by a port.
fn looks_like_host_and_port(components: &reference::Components<'_>) -> bool {
    let first_segment = components.path.split('/').next().unwrap_or_default();
    components.authority.is_none()
        && !first_segment.is_empty()
        && first_segment.bytes().all(|b| b.is_ascii_digit())
}

impl Target {
    /// Parses and validates a URL such as `http://example.com:8080/upload?id=1`:
    ///
    /// - Surrounding whitespace is trimmed. A URL longer than `MAX_URL_LEN` (64 KiB) is
    ///   refused, and so is any control character (CR, LF, tab, NUL, DEL ...) left inside:
    ///   those are header injection, never a typo to repair.
    /// - The scheme must be `http` or `https`, any case; another scheme (`ftp:`, `file:`,
    ///   `mailto:`) is [`RequestError::UnsupportedScheme`].
    /// - The host is a name (letters, digits, `-`, `.`, `_`; lowercased), an IPv4 literal,
    ///   or an IPv6 literal in brackets. Non-ASCII names must be given in their IDNA
    ///   (`xn--`) form: chunkwire has no IDNA tables.
    /// - `user:password@` becomes [`Target::credentials`], percent-decoded.
    /// - The path and query are percent-encoded where RFC 3986 does not allow a byte:
    ///   non-ASCII bytes (the UTF-8 of `é` becomes `%C3%A9`), spaces (`%20`),
    ///   `` "<>\^`{|}[] ``, and a `%` that starts no `%XX`. A `%XX` already there is kept
    ///   exactly, never decoded.
    /// - Spaces are encoded rather than refused. curl refuses a space in the URL it is
    ///   given but encodes one in a `Location`; browsers and the WHATWG URL standard
    ///   (reqwest's parser) encode it in both. A space in a path has only one sensible
    ///   meaning, so chunkwire encodes it in both too. A space in the host is refused.
    /// - Dot segments (`/a/../b/./c` is `/b/c`) are removed from the path, as RFC 3986
    ///   section 5.2.4 says and curl does. Only literal dots count, not `%2E`.
    /// - The fragment (`#...`) is dropped: it is never sent (RFC 9110 section 4.2.5).
    pub fn parse(url: &str) -> Result<Target, RequestError> {
        let url = url.trim_matches(is_surrounding_whitespace);
        if url.len() > MAX_URL_LEN {
            return Err(invalid(url, TOO_LONG));
        }
        if url.is_empty() {
            return Err(invalid(url, EMPTY));
        }
        if has_control_character(url.as_bytes()) {
            return Err(invalid(url, CONTROL_CHARACTER));
        }
        let components = reference::split(url);
        let scheme = match components.scheme {
            Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            Some(_) if looks_like_host_and_port(&components) => {
                return Err(invalid(url, HOST_PORT_WITHOUT_SCHEME));
            }
            Some(s) => return Err(RequestError::UnsupportedScheme(shown_in_message(s))),
            None => return Err(invalid(url, NO_SCHEME)),
        };
        let authority = components
            .authority
            .ok_or_else(|| invalid(url, NO_SLASHES))?;
        let Authority {
            credentials,
            host,
            bracketed_host,
            port,
        } = parse_authority(url, authority, scheme)?;
        let host_header = if port == scheme.default_port() {
            bracketed_host
        } else {
            format!("{bracketed_host}:{port}")
        };
        let path = percent::encode_where_needed(components.path, percent::is_path_byte);
        let mut request_target = reference::remove_dot_segments(&path);
        if request_target.is_empty() {
            request_target.push('/');
        }
        if let Some(query) = components.query {
            request_target.push('?');
            request_target.push_str(&percent::encode_where_needed(query, percent::is_query_byte));
        }
        Ok(Target {
            scheme,
            host,
            port,
            host_header,
            request_target,
            credentials,
        })
    }

    /// The target a redirect's `Location` value points to, resolved against this one.
    ///
    /// The value is trimmed of surrounding whitespace; control characters inside are
    /// refused; bytes above ASCII (servers send raw UTF-8) are percent-encoded. Then it is
    /// resolved (RFC 3986 section 5.2) and parsed, so a scheme other than http or https
    /// is [`RequestError::UnsupportedScheme`]. The fragment is dropped like any other.
    /// The credentials carry over only when the new target has the same origin and brings
    /// none of its own.
    pub fn redirect(&self, location: &[u8]) -> Result<Target, RequestError> {
        let location = location.trim_ascii();
        let shown = || String::from_utf8_lossy(location).into_owned();
        if location.len() > MAX_URL_LEN {
            return Err(invalid(&shown(), TOO_LONG));
        }
        if location.is_empty() {
            return Err(invalid("", EMPTY_LOCATION));
        }
        if has_control_character(location) {
            return Err(invalid(&shown(), CONTROL_CHARACTER));
        }
        let reference = percent::encode_non_ascii(location);
        let mut next = Target::parse(&resolve_reference(self, &reference))?;
        if next.credentials.is_none() && next.same_origin(self) {
            next.credentials.clone_from(&self.credentials);
        }
        Ok(next)
    }

    /// True when both have the same scheme, host and port (RFC 6454's origin).
    pub fn same_origin(&self, other: &Target) -> bool {
        (self.scheme, &self.host, self.port) == (other.scheme, &other.host, other.port)
    }

    /// The `Authorization` field value for the URL's credentials, if it had any:
    /// `Basic ` and the base64 of `user:password` (RFC 7617).
    pub fn basic_authorization(&self) -> Option<String> {
        self.credentials
            .as_ref()
            .map(Credentials::basic_authorization)
    }

    /// `host:port`, with brackets around an IPv6 literal, as shown in messages.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// RFC 3986 section 5.2: the absolute URL that `reference` (a `Location` value, a link)
/// stands for when found at `base`, fragment included, as the RFC's examples write it.
///
/// Nothing is checked or encoded: `g:h` resolves to `g:h` and `http:g` to `http:g` (the
/// RFC's strict parsing). [`Target::redirect`] is the step that refuses what cannot be
/// uploaded to. The base's credentials are not part of the result.
pub fn resolve_reference(base: &Target, reference: &str) -> String {
    let (base_path, base_query) = match base.request_target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (base.request_target.as_str(), None),
    };
    let base = reference::Components {
        scheme: Some(base.scheme.as_str()),
        authority: Some(&base.host_header),
        path: base_path,
        query: base_query,
        fragment: None,
    };
    reference::resolve(&base, &reference::split(reference))
}

/// `url` with `name` appended to its path as exactly one segment, for the CLI's "several
/// files to a URL ending in `/`": `http://h/in/` and `rep#1.bin` give
/// `http://h/in/rep%231.bin`.
///
/// Every byte of `name` but the RFC 3986 unreserved ones (letters, digits, `-._~`) is
/// percent-encoded, as curl does for `-T`, so `/`, `?`, `#` and `%` stay inside the
/// segment, a `%41` in a file name stays those three characters, and non-ASCII names are
/// sent as their UTF-8. A `/` is put between path and name if the path lacks one; the
/// query and fragment, if any, stay after the new segment.
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "the CLI calls it once lib.rs re-exports it")
)]
pub fn with_path_segment(url: &str, name: &str) -> String {
    // An authority cannot hold '?' or '#', so the first one ends the path.
    let path_end = url.find(['?', '#']).unwrap_or(url.len());
    let (before, after) = url.split_at(path_end);
    let separator = if before.ends_with('/') { "" } else { "/" };
    format!(
        "{before}{separator}{}{after}",
        percent::encode_segment(name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> Target {
        Target::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn host_header_carries_port_only_when_not_default() {
        let cases = [
            (
                "http://example.com/up",
                "example.com",
                80,
                "example.com",
                "/up",
            ),
            (
                "http://example.com:8080/up?a=1",
                "example.com",
                8080,
                "example.com:8080",
                "/up?a=1",
            ),
            (
                "http://example.com:80",
                "example.com",
                80,
                "example.com",
                "/",
            ),
            ("http://[::1]:8080/x", "::1", 8080, "[::1]:8080", "/x"),
            (
                "http://[2001:db8::1]/",
                "2001:db8::1",
                80,
                "[2001:db8::1]",
                "/",
            ),
            ("http://127.0.0.1:9/", "127.0.0.1", 9, "127.0.0.1:9", "/"),
            ("http://h?q=1", "h", 80, "h", "/?q=1"),
            ("http://h:/p", "h", 80, "h", "/p"),
            ("HTTP://h/p", "h", 80, "h", "/p"),
        ];
        for (url, host, port, host_header, target) in cases {
            let t = ok(url);
            assert_eq!(
                (
                    t.host.as_str(),
                    t.port,
                    t.host_header.as_str(),
                    t.request_target.as_str()
                ),
                (host, port, host_header, target),
                "{url}"
            );
        }
    }

    #[test]
    fn refuses_what_cannot_be_uploaded_to() {
        for url in [
            "http://h:99999/",
            "http://h:0/",
            "http://h:8x/",
            "http:///x",
            "/relative",
            "http://h/\r\nX: y",
            "",
            "https://[]:8443/",
            "http://[zz]/",
        ] {
            let err = Target::parse(url).expect_err(url);
            assert!(
                matches!(err, RequestError::InvalidUrl { .. }),
                "{url}: {err:?}"
            );
        }
        let https = ok("https://example.com/x");
        assert_eq!(
            (https.scheme, https.port, https.host_header.as_str()),
            (Scheme::Https, 443, "example.com")
        );
        assert_eq!(
            ok("https://example.com:8443/").host_header,
            "example.com:8443"
        );
        assert!(matches!(
            Target::parse("ftp://h/"),
            Err(RequestError::UnsupportedScheme(_))
        ));
    }

    #[test]
    fn fragment_is_not_sent() {
        assert_eq!(ok("http://h/x?y#frag").request_target, "/x?y");
    }

    #[test]
    fn dot_segments_are_removed_from_the_path() {
        let cases = [
            ("http://h/a/../../up/./x", "/up/x"),
            ("http://h/a/b/..", "/a/"),
            ("http://h/./a/.", "/a/"),
            ("http://h/..", "/"),
            ("http://h/a/..?x=/../y", "/?x=/../y"),
            ("http://h/a/.b/..c/", "/a/.b/..c/"),
        ];
        for (url, target) in cases {
            assert_eq!(ok(url).request_target, target, "{url}");
        }
    }

    #[test]
    fn path_and_query_are_percent_encoded_where_needed() {
        let cases = [
            ("http://h/a b", "/a%20b"),
            (
                "http://h/caf\u{e9}?q=\u{e9}t\u{e9}",
                "/caf%C3%A9?q=%C3%A9t%C3%A9",
            ),
            ("http://h/%41%2f?x=%e9", "/%41%2f?x=%e9"),
            ("http://h/100%", "/100%25"),
            ("http://h/a\"<>\\^`{|}", "/a%22%3C%3E%5C%5E%60%7B%7C%7D"),
            ("http://h/!$&'()*+,;=:@-._~", "/!$&'()*+,;=:@-._~"),
            ("http://h/p?a=1&b=/c?d", "/p?a=1&b=/c?d"),
            ("http://h/p?a b", "/p?a%20b"),
            ("http://h/p#frag ment", "/p"),
            ("  http://h/p \n", "/p"),
        ];
        for (url, target) in cases {
            assert_eq!(ok(url).request_target, target, "{url}");
        }
    }

    #[test]
    fn url_errors_name_the_real_problem() {
        let long = format!("http://h/{}", "a".repeat(66 * 1024));
        let cases: [(&str, &str); 22] = [
            (&long, "65536"),
            ("", "empty"),
            ("file://x", "\"file\""),
            ("ftp://h/", "\"ftp\""),
            ("http://[::1", "no closing ']'"),
            ("http://[::1/x", "no closing ']'"),
            ("http://[::1]x/", "after the IPv6 address"),
            ("http://[zz]/", "IPv6 address"),
            ("http://::1/", "in brackets"),
            ("http://", "no host"),
            ("http:///x", "no host"),
            ("http://user:pw@/x", "no host"),
            ("http:/x", "\"//\""),
            ("localhost:8080/x", "host:port"),
            ("example.com/x", "no scheme"),
            ("http://h:99999/", "port"),
            ("http://h:+80/", "port"),
            ("http://h:8x/", "port"),
            ("http://h:0/", "port 0"),
            ("http://h/\r\nX: y", "control character"),
            ("http://h h/", "host"),
            ("http://b\u{fc}cher.example/", "IDNA"),
        ];
        assert!(TOO_LONG.contains(&MAX_URL_LEN.to_string()), "{TOO_LONG}");
        for (url, needle) in cases {
            let message = Target::parse(url).expect_err(url).to_string();
            assert!(message.contains(needle), "{url:.60}: {message}");
            assert!(
                !message.contains("spaces and control characters"),
                "{url:.60}: {message}"
            );
            assert!(message.len() < 600, "{url:.60}: message not truncated");
        }
    }

    #[test]
    fn url_credentials_become_basic_authentication() {
        let t = ok("http://Aladdin:open%20sesame@h/x");
        assert_eq!(
            (
                t.host.as_str(),
                t.host_header.as_str(),
                t.request_target.as_str()
            ),
            ("h", "h", "/x")
        );
        let debug = format!("{t:?}");
        assert!(!debug.contains("sesame"), "{debug}");
        let credentials = t.credentials.as_ref().expect("credentials");
        assert_eq!(
            (credentials.user.as_str(), credentials.password.as_str()),
            ("Aladdin", "open sesame")
        );
        assert_eq!(
            t.basic_authorization().as_deref(),
            Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        );
        assert_eq!(ok("http://h/").basic_authorization(), None);
        assert_eq!(ok("http://@h/").credentials, None);
        assert_eq!(ok("http://u:p@ss@h/").credentials.unwrap().password, "p@ss");
    }

    /// RFC 3986 section 5.4: every example, with its base `http://a/b/c/d;p?q`.
    #[test]
    fn resolves_every_rfc_3986_example() {
        let normal = [
            ("g:h", "g:h"),
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q#s"),
            ("g#s", "http://a/b/c/g#s"),
            ("g?y#s", "http://a/b/c/g?y#s"),
            (";x", "http://a/b/c/;x"),
            ("g;x", "http://a/b/c/g;x"),
            ("g;x?y#s", "http://a/b/c/g;x?y#s"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../", "http://a/"),
            ("../../g", "http://a/g"),
        ];
        let abnormal = [
            ("../../../g", "http://a/g"),
            ("../../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            (".g", "http://a/b/c/.g"),
            ("g..", "http://a/b/c/g.."),
            ("..g", "http://a/b/c/..g"),
            ("./../g", "http://a/b/g"),
            ("./g/.", "http://a/b/c/g/"),
            ("g/./h", "http://a/b/c/g/h"),
            ("g/../h", "http://a/b/c/h"),
            ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
            ("g;x=1/../y", "http://a/b/c/y"),
            ("g?y/./x", "http://a/b/c/g?y/./x"),
            ("g?y/../x", "http://a/b/c/g?y/../x"),
            ("g#s/./x", "http://a/b/c/g#s/./x"),
            ("g#s/../x", "http://a/b/c/g#s/../x"),
            ("http:g", "http:g"),
        ];
        let base = ok("http://a/b/c/d;p?q");
        for (reference, expected) in normal.into_iter().chain(abnormal) {
            assert_eq!(
                resolve_reference(&base, reference),
                expected,
                "{reference:?}"
            );
        }
    }

    #[test]
    fn redirect_resolves_encodes_and_refuses() {
        let base = ok("https://user:pw@a:8443/b/c/d;p?q");
        let cases: [(&[u8], &str, &str); 10] = [
            (b"g", "a:8443", "/b/c/g"),
            (b"  /x?y#frag\t", "a:8443", "/x?y"),
            (b"../g h", "a:8443", "/b/g%20h"),
            ("/caf\u{e9}".as_bytes(), "a:8443", "/caf%C3%A9"),
            (b"/l\xe9", "a:8443", "/l%E9"),
            (b"/%41%2F", "a:8443", "/%41%2F"),
            (b"//other/x", "other", "/x"),
            (b"HTTP://A/up/../x", "a", "/x"),
            (b"?only", "a:8443", "/b/c/d;p?only"),
            (b"#s", "a:8443", "/b/c/d;p?q"),
        ];
        for (location, host_header, request_target) in cases {
            let next = base
                .redirect(location)
                .unwrap_or_else(|e| panic!("{location:?}: {e}"));
            assert_eq!(
                (next.host_header.as_str(), next.request_target.as_str()),
                (host_header, request_target),
                "{location:?}"
            );
        }
        for scheme in [
            "g:h",
            "ftp://a/x",
            "file:///etc/passwd",
            "mailto:a@b",
            "data:,x",
        ] {
            assert!(
                matches!(
                    base.redirect(scheme.as_bytes()),
                    Err(RequestError::UnsupportedScheme(_))
                ),
                "{scheme}"
            );
        }
        let refused: [(&[u8], &str); 4] = [
            (b"", "empty"),
            (b"  ", "empty"),
            (b"/a\r\nSet-Cookie: x", "control character"),
            (b"http:g", "\"//\""),
        ];
        for (location, needle) in refused {
            let message = base.redirect(location).expect_err("refused").to_string();
            assert!(message.contains(needle), "{location:?}: {message}");
        }
        let huge = vec![b'a'; MAX_URL_LEN + 1];
        assert!(
            base.redirect(&huge)
                .unwrap_err()
                .to_string()
                .contains("65536")
        );
    }

    #[test]
    fn redirect_keeps_credentials_on_the_same_origin_only() {
        let base = ok("http://user:pw@a/x");
        let cases = [
            ("/y", Some(("user", "pw"))),
            ("http://A:80/y", Some(("user", "pw"))),
            ("http://a:8080/y", None),
            ("https://a/y", None),
            ("//b/y", None),
            ("http://other:secret@b/y", Some(("other", "secret"))),
        ];
        for (location, expected) in cases {
            let next = base.redirect(location.as_bytes()).unwrap();
            let got = next
                .credentials
                .as_ref()
                .map(|c| (c.user.as_str(), c.password.as_str()));
            assert_eq!(got, expected, "{location:?}");
        }
    }

    #[test]
    fn file_name_becomes_one_path_segment() {
        let cases = [
            ("http://h/in/", "plain.bin", "http://h/in/plain.bin"),
            ("http://h/in/", "rep#1.bin", "http://h/in/rep%231.bin"),
            ("http://h/in/", "q?x=1.bin", "http://h/in/q%3Fx%3D1.bin"),
            ("http://h/in/", "pct%41.bin", "http://h/in/pct%2541.bin"),
            ("http://h/in/", "a/b", "http://h/in/a%2Fb"),
            ("http://h/in/", "a b+c&d", "http://h/in/a%20b%2Bc%26d"),
            (
                "http://h/in/",
                "r\u{e9}sum\u{e9}.txt",
                "http://h/in/r%C3%A9sum%C3%A9.txt",
            ),
            ("http://h/in/", "-._~", "http://h/in/-._~"),
            ("http://h/in/", "..", "http://h/in/%2E%2E"),
            ("http://h/in", "f", "http://h/in/f"),
            ("http://h", "f", "http://h/f"),
            ("http://h/in/?k=v", "f", "http://h/in/f?k=v"),
        ];
        for (url, name, expected) in cases {
            let joined = with_path_segment(url, name);
            assert_eq!(joined, expected, "{url} + {name}");
            // One segment more, whatever the name held.
            let target = ok(&joined);
            let path = target.request_target.split('?').next().unwrap();
            let base_path = ok(url).request_target;
            let base_path = base_path.split('?').next().unwrap();
            assert_eq!(
                path.matches('/').count(),
                base_path.trim_end_matches('/').matches('/').count() + 1,
                "{joined}"
            );
        }
    }

    #[test]
    fn errors_never_show_the_password() {
        for url in [
            "http://user:hunter2@h:99999/",
            "http://user:hunter2@[::1/",
            "http://user:hunter2@/",
            "http://user:hunter2@h/\r\nX: y",
            "http://user:hunter2@h h/",
        ] {
            let message = Target::parse(url).expect_err(url).to_string();
            assert!(!message.contains("hunter2"), "{url}: {message}");
            assert!(message.contains("user:***@"), "{url}: {message}");
        }
    }
}
