//! Property tests of forms: for many combinations of part kinds and sizes, names with the
//! characters browsers escape, source read splits and fill slice sizes, the stated
//! Content-Length is the number of bytes the body has, and a multipart splitter of the
//! test's own gives back every part, name and file name; over a socket too, where the
//! server counts what arrived.

use std::io::{Cursor, Read, Write};
use std::net::TcpListener;
use std::thread;

use chunkwire::{Client, Form, FormPart};
use proptest::collection::vec;
use proptest::prelude::*;

/// What a generated part is made from.
#[derive(Debug, Clone)]
struct PartSpec {
    kind: Kind,
    name: String,
    file_name: Option<String>,
    data: Vec<u8>,
    /// The most bytes a read of its source gives.
    trickle: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Bytes,
    Sized,
    Unsized,
    Seekable,
}

/// A reader that gives at most `step` bytes a read, as pipes and slow sources do.
struct Trickle {
    inner: Cursor<Vec<u8>>,
    step: usize,
}

impl Read for Trickle {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = out.len().min(self.step);
        self.inner.read(&mut out[..n])
    }
}

impl std::io::Seek for Trickle {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(to)
    }
}

const BOUNDARY: &str = "prop-Boundary-7x";

/// Names from the characters that matter: the escaped ones, separators, non-ASCII.
fn name() -> impl Strategy<Value = String> {
    let chars = prop::sample::select(vec![
        'a', 'Z', '"', '\r', '\n', ';', ' ', '=', '\\', 'é', '中',
    ]);
    vec(chars, 0..8).prop_map(|c| c.into_iter().collect())
}

fn part_spec() -> impl Strategy<Value = PartSpec> {
    let kind = prop::sample::select(vec![
        Kind::Text,
        Kind::Bytes,
        Kind::Sized,
        Kind::Unsized,
        Kind::Seekable,
    ]);
    let size = prop_oneof![3 => 0usize..40, 1 => 0usize..5000];
    (
        kind,
        name(),
        prop::option::of(name()),
        size,
        any::<u8>(),
        1usize..3000,
    )
        .prop_map(|(kind, name, file_name, size, seed, trickle)| {
            let data = (0..size)
                .map(|i| match kind {
                    Kind::Text => b'a' + ((i + seed as usize) % 26) as u8,
                    _ => (i as u8).wrapping_mul(31).wrapping_add(seed),
                })
                .collect();
            PartSpec {
                kind,
                name,
                file_name,
                data,
                trickle,
            }
        })
}

fn form_of(specs: &[PartSpec]) -> Form<'static> {
    let mut form = Form::new().boundary(BOUNDARY);
    for spec in specs {
        let trickle = Trickle {
            inner: Cursor::new(spec.data.clone()),
            step: spec.trickle,
        };
        let part = match spec.kind {
            Kind::Text => FormPart::text(String::from_utf8(spec.data.clone()).unwrap()),
            Kind::Bytes => FormPart::bytes(spec.data.clone()),
            Kind::Sized => FormPart::reader_with_length(trickle, spec.data.len() as u64),
            Kind::Unsized => FormPart::reader(trickle),
            Kind::Seekable => FormPart::seekable(trickle),
        };
        let part = match &spec.file_name {
            Some(file_name) => part.file_name(file_name.clone()),
            None => part,
        };
        form = form.part(spec.name.clone(), part);
    }
    form
}

fn escaped(name: &str) -> String {
    name.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Checks `body` against the parts it was made of, with a splitter of the test's own.
fn check_body(body: &[u8], specs: &[PartSpec]) -> Result<(), TestCaseError> {
    let delimiter = format!("\r\n--{BOUNDARY}");
    let first = format!("--{BOUNDARY}");
    prop_assert!(body.starts_with(first.as_bytes()));
    let mut rest = &body[first.len()..];
    for spec in specs {
        prop_assert!(rest.starts_with(b"\r\n"));
        rest = &rest[2..];
        let end = rest
            .windows(delimiter.len())
            .position(|w| w == delimiter.as_bytes());
        prop_assert!(end.is_some(), "a delimiter after part {:?}", spec.name);
        let end = end.unwrap();
        let part = &rest[..end];
        let head_end = part.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(part[..head_end].to_vec()).unwrap();
        let mut disposition = format!(
            "Content-Disposition: form-data; name=\"{}\"",
            escaped(&spec.name)
        );
        if let Some(file_name) = &spec.file_name {
            disposition.push_str(&format!("; filename=\"{}\"", escaped(file_name)));
        }
        let lines: Vec<&str> = head.split("\r\n").collect();
        prop_assert_eq!(lines[0], disposition.as_str());
        let typed = !matches!(spec.kind, Kind::Text | Kind::Bytes);
        prop_assert_eq!(lines.len(), 1 + usize::from(typed));
        prop_assert_eq!(&part[head_end + 4..], &spec.data[..]);
        rest = &rest[end + delimiter.len()..];
    }
    if specs.is_empty() {
        let only_close = format!("--{BOUNDARY}--\r\n");
        prop_assert_eq!(body, only_close.as_bytes());
    } else {
        prop_assert_eq!(rest, b"--\r\n");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// The reader alone: the stated length is the body's, and the body splits back into
    /// the parts, for fill slices from 1 byte up.
    #[test]
    fn the_stated_length_is_the_bodys_and_it_splits_back_into_the_parts(
        specs in vec(part_spec(), 0..7),
        slices in vec(prop_oneof![3 => 1usize..=16, 1 => 1usize..=6000], 1..6),
    ) {
        let mut reader = form_of(&specs).into_reader().unwrap();
        let sized = specs.iter().all(|s| s.kind != Kind::Unsized);
        prop_assert_eq!(reader.content_length().is_some(), sized);
        // A reader with a stated length is sized, and cannot be read again.
        let rewindable = specs.iter().all(|s| !matches!(s.kind, Kind::Sized | Kind::Unsized));
        prop_assert_eq!(reader.can_rewind(), rewindable);
        let mut body = Vec::new();
        let mut space = vec![0u8; 6000];
        for slice in slices.iter().cycle() {
            let n = reader.read(&mut space[..*slice]).unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&space[..n]);
        }
        if let Some(len) = reader.content_length() {
            prop_assert_eq!(len, body.len() as u64);
        }
        check_body(&body, &specs)?;
        if rewindable {
            reader.rewind().unwrap();
            let mut again = Vec::new();
            reader.read_to_end(&mut again).unwrap();
            prop_assert_eq!(again, body);
        }
    }
}

/// One request at a loopback server that returns what came: its head and body bytes.
fn receive_one() -> (String, thread::JoinHandle<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/p", listener.local_addr().unwrap());
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut data = Vec::new();
        let mut buf = [0u8; 16384];
        let head_end = loop {
            if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0);
            data.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .expect("a sized form has a Content-Length")
            .trim()
            .parse()
            .unwrap();
        let mut body = data.split_off(head_end);
        while body.len() < len {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "closed after {} of {len} body bytes", body.len());
            body.extend_from_slice(&buf[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            .unwrap();
        (head, body)
    });
    (url, handle)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Over a socket: the Content-Length sent is the number of body bytes that arrive, and
    /// they split back into the parts, for chunk sizes from 1 byte up.
    #[test]
    fn over_a_socket_the_content_length_is_the_bytes_that_arrive(
        specs in vec(part_spec(), 0..5)
            .prop_map(|specs| specs.into_iter().filter(|s| s.kind != Kind::Unsized).collect::<Vec<_>>()),
        chunk in prop_oneof![1usize..=8, 9usize..=70_000],
    ) {
        let (url, server) = receive_one();
        let response = Client::builder()
            .chunk_size(chunk)
            .build()
            .unwrap()
            .upload(&url)
            .method("POST")
            .send_form(form_of(&specs))
            .unwrap();
        prop_assert_eq!(response.status(), 204);
        let (head, body) = server.join().unwrap();
        prop_assert!(!head.contains("Transfer-Encoding"), "{}", head);
        prop_assert_eq!(response.progress().body_bytes_sent, body.len() as u64);
        check_body(&body, &specs)?;
    }
}
