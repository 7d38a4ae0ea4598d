//! The wire trace never prints a secret: credential fields show their name and scheme only,
//! a password in a URL is masked, whichever format and however the lines are split.

use std::sync::{Arc, Mutex};

use chunkwire::Client;
use chunkwire::sink::Sink;
use chunkwire::trace::{Direction, Part, Trace, TraceFormat, TraceWriter};

const FORMATS: [TraceFormat; 3] = [
    TraceFormat::Ascii { data_limit: 64 },
    TraceFormat::Hex,
    TraceFormat::Json,
];

const REQUEST_LINE: &[u8] = b"PUT /x HTTP/1.1\r\n";
const HOST: &[u8] = b"Host: h\r\n";
const AFTER: &[u8] = b"X-After: 1\r\n";

/// Every way `secret` could show in a trace: as text, and as hex with or without spaces.
/// Windows of a few bytes catch a secret cut across hex-dump rows or across events.
fn leaks(trace: &str, secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let mut found = Vec::new();
    for window in bytes.windows(6.min(bytes.len())) {
        let text = std::str::from_utf8(window).unwrap();
        let hex: Vec<String> = window.iter().map(|b| format!("{b:02x}")).collect();
        for form in [text.to_owned(), hex.concat(), hex.join(" ")] {
            if trace.contains(&form) {
                found.push(form);
            }
        }
    }
    found
}

/// A head with `line` in it, `line` given to the trace in pieces cut at `cuts`.
fn traced_head(
    format: TraceFormat,
    direction: Direction,
    start: Part,
    line: &[u8],
    cuts: &[usize],
) -> String {
    let mut trace = TraceWriter::new(Vec::new(), format);
    trace.bytes(direction, start, REQUEST_LINE);
    trace.bytes(direction, Part::Header, HOST);
    let mut from = 0;
    for &cut in cuts.iter().chain([&line.len()]) {
        if cut > from {
            trace.bytes(direction, Part::Header, &line[from..cut]);
            from = cut;
        }
    }
    trace.bytes(direction, Part::Header, AFTER);
    trace.bytes(direction, Part::EndOfHead, b"\r\n");
    String::from_utf8(trace.into_inner()).unwrap()
}

/// Every split of `line` into two calls, and one byte a call.
fn splits(line: &[u8]) -> Vec<Vec<usize>> {
    let mut all: Vec<Vec<usize>> = (0..=line.len()).map(|cut| vec![cut]).collect();
    all.push((1..line.len()).collect());
    all
}

/// The offset of the line after the secret one is where it really is, in every format.
fn assert_later_lines_line_up(format: TraceFormat, trace: &str, line_len: usize) {
    let offset = REQUEST_LINE.len() + HOST.len() + line_len;
    let expected = match format {
        TraceFormat::Ascii { .. } => format!(" {offset:>10} header               X-After: 1\\r\\n"),
        TraceFormat::Hex => format!(" {offset:>10} header ({} bytes)", AFTER.len()),
        TraceFormat::Json => format!("\"offset\":{offset},\"part\":\"header\",\"len\":12,"),
    };
    assert!(trace.contains(&expected), "{format:?}: {expected}\n{trace}");
    let end_offset = offset + AFTER.len();
    let end = match format {
        TraceFormat::Ascii { .. } | TraceFormat::Hex => format!(" {end_offset:>10} end of head"),
        TraceFormat::Json => format!("\"offset\":{end_offset},\"part\":\"end of head\""),
    };
    assert!(trace.contains(&end), "{format:?}: {end}\n{trace}");
}

#[test]
fn credential_fields_show_name_and_scheme_only_at_every_split_in_every_format() {
    let cases: [(&str, &str, &str); 4] = [
        (
            "Authorization: Basic dXNlcjpzM2NyZXQ=\r\n",
            "dXNlcjpzM2NyZXQ=",
            "Authorization: Basic <redacted, 16 bytes>",
        ),
        (
            "Proxy-Authorization: Bearer t0ken.s3cret\r\n",
            "t0ken.s3cret",
            "Proxy-Authorization: Bearer <redacted, 12 bytes>",
        ),
        (
            "cookie: session=c00kie-s3cret; b=2\r\n",
            "session=c00kie-s3cret; b=2",
            "cookie: <redacted, 26 bytes>",
        ),
        // A bare token is not shown as if it were a scheme: it may be the credential.
        (
            "Authorization: ap1keyS3cretValue\r\n",
            "ap1keyS3cretValue",
            "Authorization: <redacted, 17 bytes>",
        ),
    ];
    for (line, secret, shown) in cases {
        for format in FORMATS {
            for cuts in splits(line.as_bytes()) {
                let trace = traced_head(
                    format,
                    Direction::Sent,
                    Part::RequestLine,
                    line.as_bytes(),
                    &cuts,
                );
                let leaked = leaks(&trace, secret);
                assert!(
                    leaked.is_empty(),
                    "{format:?} cut at {cuts:?} leaks {leaked:?}:\n{trace}"
                );
                assert!(
                    trace.contains(shown),
                    "{format:?} cut at {cuts:?}: no {shown:?}:\n{trace}"
                );
                assert_later_lines_line_up(format, &trace, line.len());
            }
        }
    }
}

#[test]
fn the_masked_line_keeps_its_real_offset_and_length() {
    let line = b"Authorization: Basic dXNlcjpzM2NyZXQ=\r\n";
    let offset = REQUEST_LINE.len() + HOST.len();
    let hex = traced_head(
        TraceFormat::Hex,
        Direction::Sent,
        Part::RequestLine,
        line,
        &[9],
    );
    assert!(
        hex.contains(&format!(" {offset:>10} header ({} bytes, ", line.len())),
        "{hex}"
    );
    assert!(
        hex.contains("masked"),
        "the hex dump says it is masked: {hex}"
    );
    let json = traced_head(
        TraceFormat::Json,
        Direction::Sent,
        Part::RequestLine,
        line,
        &[30],
    );
    assert!(
        json.contains(&format!(
            "\"offset\":{offset},\"part\":\"header\",\"len\":{},\"masked\":\"Authorization: Basic <redacted, 16 bytes>\\r\\n\"}}",
            line.len()
        )),
        "{json}"
    );
}

#[test]
fn received_credentials_are_masked_too() {
    // The sink traces the requests it receives.
    let line = b"Authorization: Basic dXNlcjpzM2NyZXQ=\r\n";
    for format in FORMATS {
        let trace = traced_head(format, Direction::Received, Part::RequestLine, line, &[17]);
        assert!(leaks(&trace, "dXNlcjpzM2NyZXQ=").is_empty(), "{trace}");
        assert!(trace.contains("Authorization: Basic <redacted, 16 bytes>"));
    }
}

#[test]
fn a_password_in_a_location_is_masked_at_every_split_in_every_format() {
    let cases: [(&str, &str); 3] = [
        (
            "Location: http://user:pa55word@example.com/next?a=b@c\r\n",
            "Location: http://user:***@example.com/next?a=b@c",
        ),
        (
            "content-location:  https://u:pa55word@[::1]:8443/\r\n",
            "content-location:  https://u:***@[::1]:8443/",
        ),
        (
            "Location: http://me:pa55word@h/a http://you:pa55word@h/b\r\n",
            "Location: http://me:***@h/a http://you:***@h/b",
        ),
    ];
    for (line, shown) in cases {
        for format in FORMATS {
            for cuts in splits(line.as_bytes()) {
                let trace = traced_head(
                    format,
                    Direction::Received,
                    Part::StatusLine,
                    line.as_bytes(),
                    &cuts,
                );
                let leaked = leaks(&trace, "pa55word");
                assert!(
                    leaked.is_empty(),
                    "{format:?} cut at {cuts:?} leaks {leaked:?}:\n{trace}"
                );
                assert!(trace.contains(shown), "{format:?} {cuts:?}:\n{trace}");
                assert_later_lines_line_up(format, &trace, line.len());
            }
        }
    }
}

/// The trace with the time column taken out.
fn without_times(trace: &str) -> Vec<String> {
    trace
        .lines()
        .map(|line| match line.split_once(",\"dir\"") {
            Some((_, rest)) => rest.to_owned(),
            None => line.get(11..).unwrap_or(line).to_owned(),
        })
        .collect()
}

#[test]
fn other_lines_print_as_they_came_at_every_split() {
    // Set-Cookie is left alone; a Location without a password is shown as it is; a name
    // that begins like a masked one is not held back.
    let lines: [&[u8]; 6] = [
        b"Set-Cookie: id=1\r\n",
        b"Location: /next@here\r\n",
        b"Location: http://user@example.com/\r\n",
        b"Cookies-Wanted: no\r\n",
        b"Authorization-Hint: none\r\n",
        b"Content-Type: text/plain\r\n",
    ];
    for line in lines {
        for format in FORMATS {
            for cuts in splits(line) {
                let trace = traced_head(format, Direction::Sent, Part::RequestLine, line, &cuts);
                // The same pieces, labelled as bytes that are never masked.
                let mut plain = TraceWriter::new(Vec::new(), format);
                plain.bytes(Direction::Sent, Part::RequestLine, REQUEST_LINE);
                plain.bytes(Direction::Sent, Part::Header, HOST);
                let mut from = 0;
                for &cut in cuts.iter().chain([&line.len()]) {
                    if cut > from {
                        plain.bytes(Direction::Sent, Part::Body, &line[from..cut]);
                        from = cut;
                    }
                }
                plain.bytes(Direction::Sent, Part::Header, AFTER);
                plain.bytes(Direction::Sent, Part::EndOfHead, b"\r\n");
                let plain = String::from_utf8(plain.into_inner()).unwrap();
                let plain = plain
                    .replace("body                ", "header              ")
                    .replace("\"part\":\"body\"", "\"part\":\"header\"")
                    .replace(" body (", " header (");
                let expected: Vec<String> = without_times(&plain)
                    .into_iter()
                    .map(|l| match l.rfind(" (") {
                        // Ascii shows the size of data parts; headers have none.
                        Some(at) if matches!(format, TraceFormat::Ascii { .. }) => {
                            l[..at].to_owned()
                        }
                        _ => l,
                    })
                    .collect();
                assert_eq!(
                    without_times(&trace),
                    expected,
                    "{format:?} {:?} cut at {cuts:?}",
                    String::from_utf8_lossy(line)
                );
            }
        }
    }
}

#[test]
fn a_password_in_a_note_is_masked() {
    for format in FORMATS {
        let mut trace = TraceWriter::new(Vec::new(), format);
        trace.note(
            Direction::Sent,
            "redirected to http://user:s3cret@example.com/x (from <https://a:s3cret@b/>)",
        );
        trace.note(Direction::Received, "body framing: chunked");
        let text = String::from_utf8(trace.into_inner()).unwrap();
        assert!(!text.contains("s3cret"), "{format:?}: {text}");
        assert!(
            text.contains("redirected to http://user:***@example.com/x (from <https://a:***@b/>)"),
            "{format:?}: {text}"
        );
        assert!(text.contains("body framing: chunked"), "{text}");
    }
}

/// A trace shared with the test, which reads it once the upload is done.
struct Shared(Arc<Mutex<TraceWriter<Vec<u8>>>>);

impl Trace for Shared {
    fn bytes(&mut self, direction: Direction, part: Part, bytes: &[u8]) {
        self.0.lock().unwrap().bytes(direction, part, bytes);
    }

    fn note(&mut self, direction: Direction, text: &str) {
        self.0.lock().unwrap().note(direction, text);
    }
}

#[test]
fn an_upload_with_url_credentials_traces_no_secret() -> Result<(), Box<dyn std::error::Error>> {
    let sink = Sink::bind("127.0.0.1:0")?.spawn()?;
    for format in FORMATS {
        let writer = Arc::new(Mutex::new(TraceWriter::new(Vec::new(), format)));
        let url = format!("http://user:s3cret@127.0.0.1:{}/x", sink.addr().port());
        let mut response = Client::new()
            .upload(&url)
            .trace(Shared(writer.clone()))
            .send(&b"secret-free body"[..])?;
        response.text()?;
        drop(response);
        let mut writer = writer.lock().unwrap();
        writer.flush()?;
        let text = String::from_utf8(writer.get_ref().clone())?;
        for secret in ["s3cret", "dXNlcjpzM2NyZXQ="] {
            let leaked = leaks(&text, secret);
            assert!(leaked.is_empty(), "{format:?} leaks {leaked:?}:\n{text}");
        }
        assert!(
            text.contains("Authorization: Basic <redacted, 16 bytes>"),
            "{format:?}:\n{text}"
        );
    }
    Ok(())
}

#[test]
fn a_line_cut_short_folded_or_given_with_others_is_still_masked() {
    for format in FORMATS {
        // Cut short by the next part (a head that ends early), and by the end of the trace.
        let mut trace = TraceWriter::new(Vec::new(), format);
        trace.bytes(
            Direction::Sent,
            Part::Header,
            b"Authorization: Basic dXNlcjpz",
        );
        trace.bytes(Direction::Sent, Part::EndOfHead, b"\r\n");
        trace.bytes(Direction::Sent, Part::Trailer, b"Cookie: a=s3cret");
        let text = String::from_utf8(trace.into_inner()).unwrap();
        assert!(leaks(&text, "dXNlcjpz").is_empty(), "{format:?}: {text}");
        assert!(leaks(&text, "a=s3cret").is_empty(), "{format:?}: {text}");
        assert!(
            text.contains("Authorization: Basic <redacted, 8 bytes>"),
            "{text}"
        );
        assert!(text.contains("Cookie: <redacted, 8 bytes>"), "{text}");

        // A continuation line (obs-fold) of a credential field, and several lines in one
        // call from a caller other than the core.
        let mut trace = TraceWriter::new(Vec::new(), format);
        trace.bytes(
            Direction::Received,
            Part::Header,
            b"Proxy-Authorization: Basic dXNl\r\n cjpzM2NyZXQ=\r\nX-A: 1\r\nLocation: http://u:pa55word@h/\r\n",
        );
        trace.bytes(Direction::Received, Part::EndOfHead, b"\r\n");
        let text = String::from_utf8(trace.into_inner()).unwrap();
        for secret in ["dXNl", "cjpzM2NyZXQ=", "pa55word"] {
            assert!(leaks(&text, secret).is_empty(), "{format:?}: {text}");
        }
        assert!(text.contains(" <redacted, 12 bytes>"), "{text}");
        assert!(text.contains("http://u:***@h/"), "{text}");
        let end = match format {
            TraceFormat::Json => "\"offset\":88,\"part\":\"end of head\"".to_owned(),
            _ => format!(" {:>10} end of head", 88),
        };
        assert!(text.contains(&end), "{format:?}: {text}");
    }
}
