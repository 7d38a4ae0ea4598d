//! URL handling through the public API, checked against parsers chunkwire did not write:
//! every request-target `Target::parse` or `Target::redirect` produces must be one that
//! httparse accepts in a request line and `http::Uri` accepts as a path and query, and no
//! password may appear in an error message or a `Debug` print, whatever the input.

use chunkwire::{RequestError, Target};
use proptest::collection::vec;
use proptest::prelude::*;

/// Asserts what any accepted target must satisfy on the wire.
fn assert_sendable(target: &Target, from: &str) {
    let rt = &target.request_target;
    assert!(rt.starts_with('/'), "{from:?} -> {rt:?}");
    assert!(
        rt.bytes().all(|b| b.is_ascii_graphic()),
        "{from:?} -> {rt:?}"
    );
    assert!(!rt.contains('#'), "{from:?} -> {rt:?}");
    let path = rt.split('?').next().unwrap_or_default();
    assert!(
        !path
            .split('/')
            .any(|segment| segment == "." || segment == ".."),
        "dot segment left: {from:?} -> {rt:?}"
    );
    let head = format!("PUT {rt} HTTP/1.1\r\nHost: {}\r\n\r\n", target.host_header);
    let mut headers = [httparse::EMPTY_HEADER; 4];
    let mut request = httparse::Request::new(&mut headers);
    let status = request.parse(head.as_bytes());
    assert!(
        matches!(status, Ok(httparse::Status::Complete(_))),
        "httparse: {from:?} -> {head:?}: {status:?}"
    );
    assert_eq!(request.path, Some(rt.as_str()));
    assert!(
        rt.parse::<http::uri::PathAndQuery>().is_ok(),
        "http::Uri: {from:?} -> {rt:?}"
    );
}

/// Path and query text: URL syntax, spaces, `%`, dots, non-ASCII and the odd control.
fn url_tail() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-z0-9]{1,4}",
        2 => Just("/".to_owned()),
        1 => Just("..".to_owned()),
        1 => Just(".".to_owned()),
        1 => Just("%".to_owned()),
        1 => Just("%4".to_owned()),
        1 => Just("%2F".to_owned()),
        1 => Just("?".to_owned()),
        1 => Just("#".to_owned()),
        1 => Just(" ".to_owned()),
        1 => Just("\u{e9}".to_owned()),
        1 => Just("\u{1f600}".to_owned()),
        1 => "[\"<>\\\\^`{|}\\[\\]!$&'()*+,;=:@~]",
        1 => any::<char>().prop_map(String::from),
    ];
    vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

proptest! {
    #[test]
    fn every_parsed_target_is_sendable(tail in url_tail()) {
        let url = format!("http://h/{tail}");
        match Target::parse(&url) {
            Ok(target) => assert_sendable(&target, &url),
            Err(RequestError::InvalidUrl { reason, .. }) => {
                prop_assert!(reason.contains("control character"), "{url:?}: {reason}");
            }
            Err(other) => prop_assert!(false, "{url:?}: {other:?}"),
        }
    }

    #[test]
    fn every_redirect_target_is_sendable(location in vec(any::<u8>(), 0..40), tail in url_tail()) {
        let base = Target::parse("https://a:8443/b/c/d;p?q").unwrap();
        for location in [location, tail.into_bytes()] {
            if let Ok(next) = base.redirect(&location) {
                assert_sendable(&next, &String::from_utf8_lossy(&location));
            }
        }
    }

    #[test]
    fn the_password_is_never_shown(
        password in "[A-Za-z0-9]{10,16}",
        before in url_tail().prop_map(|t| t.replace(['/', '?', '#'], "")),
        after in url_tail(),
    ) {
        // `before` stays in the authority, so the password is the userinfo's.
        let url = format!("http://{before}user:{password}@{after}");
        let shown = match Target::parse(&url) {
            Ok(target) => format!("{target:?}"),
            Err(err) => format!("{err} {err:?}"),
        };
        prop_assert!(!shown.contains(&password), "{url:?}: {shown}");
    }
}

#[test]
fn credentials_through_the_public_api() {
    let target = Target::parse("https://Aladdin:open%20sesame@example.com/up").unwrap();
    assert_eq!(
        target.basic_authorization().as_deref(),
        Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
    );
    assert!(!format!("{target:?}").contains("sesame"));
    let same = target.redirect(b"/elsewhere").unwrap();
    assert_eq!(same.credentials, target.credentials);
    let other = target.redirect(b"https://other.example/").unwrap();
    assert_eq!(other.credentials, None);
}
