//! The upload target: a URL turned into what the connection and the request head need
//! (scheme, host to resolve, port, `Host` header value, request-target).
//!
//! Parsing is the `http` crate's (the rules hyper and reqwest apply); this module adds
//! what an upload client must refuse on top: no host, a port out of range, credentials
//! in the URL, schemes other than http and https.

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
}

/// A parsed, validated upload target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The scheme.
    pub scheme: Scheme,
    /// The host to resolve: a name, an IPv4 literal, or an IPv6 literal without brackets.
    pub host: String,
    /// The port, explicit or the scheme's default.
    pub port: u16,
    /// The `Host` header value: host, brackets for IPv6, and the port when it is not the default.
    pub host_header: String,
    /// The request-target in origin form: an absolute path and the query (RFC 9112 section 3.2.1).
    pub request_target: String,
}

const MAX_URL_IN_MESSAGE: usize = 200;

fn invalid(url: &str, reason: &'static str) -> RequestError {
    let mut shown: String = url.chars().take(MAX_URL_IN_MESSAGE).collect();
    if shown.len() < url.len() {
        shown.push('…');
    }
    RequestError::InvalidUrl { url: shown, reason }
}

impl Target {
    /// Parses and validates a URL such as `http://example.com:8080/upload?id=1`.
    pub fn parse(url: &str) -> Result<Target, RequestError> {
        let uri: http::Uri = url.parse().map_err(|_| {
            invalid(
                url,
                "not a valid URI (spaces and control characters must be percent-encoded)",
            )
        })?;
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            Some(s) => return Err(RequestError::UnsupportedScheme(s.to_owned())),
            None => return Err(invalid(url, "no scheme: expected http://host/path")),
        };
        let authority = uri.authority().ok_or_else(|| invalid(url, "no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid(
                url,
                "credentials in the URL are not sent; pass an Authorization header instead",
            ));
        }
        let bracketed_host = authority.host();
        if bracketed_host.is_empty() {
            return Err(invalid(url, "empty host"));
        }
        // `http` leaves an unparsable port as None; tell that apart from no port at all.
        let port = match authority.port() {
            Some(port) => port.as_u16(),
            None => {
                let after_host = &authority.as_str()[bracketed_host.len()..];
                match after_host {
                    "" | ":" => scheme.default_port(),
                    _ => return Err(invalid(url, "port is not a number from 0 to 65535")),
                }
            }
        };
        if port == 0 {
            return Err(invalid(url, "port 0 cannot be connected to"));
        }
        let host = match bracketed_host.strip_prefix('[') {
            Some(literal) => {
                let literal = literal.strip_suffix(']').unwrap_or(literal);
                if literal.parse::<std::net::Ipv6Addr>().is_err() {
                    return Err(invalid(url, "brackets must hold an IPv6 address"));
                }
                literal
            }
            None => bracketed_host,
        };
        let host_header = if port == scheme.default_port() {
            bracketed_host.to_owned()
        } else {
            format!("{bracketed_host}:{port}")
        };
        let request_target = match uri.path_and_query().map(|pq| pq.as_str()) {
            None | Some("") => "/".to_owned(),
            Some(pq) if pq.starts_with('?') => format!("/{pq}"),
            Some(pq) => pq.to_owned(),
        };
        Ok(Target {
            scheme,
            host: host.to_owned(),
            port,
            host_header,
            request_target,
        })
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
            "http://user:pw@h/",
            "http:///x",
            "/relative",
            "http://h/a b",
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
}
