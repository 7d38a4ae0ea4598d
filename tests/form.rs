//! Forms over the wire: the exact Content-Length of a sized form, chunked framing for a part
//! of unknown size, the whole form sent again after a 307, a required length refused before
//! connecting, a file that changes size while it is sent, the trace's labels, trailers,
//! progress, 100-continue, an early answer, and forms in a set of uploads. The bodies are
//! split by a small multipart reader of the test's own, independent of the crate's writer.
#![cfg(feature = "cli")]

use std::io::{self, Cursor, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use chunkwire::sink::Sink;
use chunkwire::trace::{Direction, Part, Trace};
use chunkwire::{Client, Form, FormPart};

#[path = "support/multipart.rs"]
mod multipart;
use multipart::{OK, read_some, server};

/// A directory of the test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "chunkwire-form-{tag}-{}-{:?}",
            std::process::id(),
            thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2654435761)
                .rotate_left(u32::from(seed % 31)) as u8
        })
        .collect()
}

fn small_chunks() -> Client {
    Client::builder().chunk_size(1000).build().unwrap()
}

#[test]
fn a_sized_form_goes_unchunked_with_its_exact_length_and_every_part_intact() {
    let dir = TempDir::new("sized");
    let video = pattern(200_000, 1);
    let path = dir.file("holiday.mp4", &video);
    let empty = dir.file("empty.txt", b"");
    let (base, seen) = server(vec![OK.into()]);
    let form = Form::new()
        .text("title", "Holiday \"2025\"")
        .file("video", &path)
        .file("nothing", &empty)
        .part("blob", FormPart::bytes(vec![0u8, 1, 2, 255]))
        .part("seek", FormPart::seekable(Cursor::new(pattern(5000, 2))))
        .part("len", FormPart::reader_with_length(&b"exactly"[..], 7));
    let mut response = small_chunks()
        .upload(&format!("{base}/up"))
        .method("POST")
        .send_form(form)
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().unwrap(), "ok");
    let seen = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        seen.head.starts_with("POST /up HTTP/1.1\r\n"),
        "{}",
        seen.head
    );
    assert!(!seen.chunked, "{}", seen.head);
    assert_eq!(
        seen.header("content-length").unwrap(),
        seen.body.len().to_string()
    );
    assert_eq!(response.progress().body_bytes_sent, seen.body.len() as u64);
    let parts = seen.parts();
    assert_eq!(parts.len(), 6);
    assert_eq!(
        parts[0].headers,
        ["Content-Disposition: form-data; name=\"title\""]
    );
    assert_eq!(parts[0].data, b"Holiday \"2025\"");
    assert_eq!(
        parts[1].headers,
        [
            "Content-Disposition: form-data; name=\"video\"; filename=\"holiday.mp4\"",
            "Content-Type: video/mp4"
        ]
    );
    assert_eq!(parts[1].data, video);
    assert_eq!(
        parts[2].headers,
        [
            "Content-Disposition: form-data; name=\"nothing\"; filename=\"empty.txt\"",
            "Content-Type: text/plain"
        ]
    );
    assert!(parts[2].data.is_empty());
    assert_eq!(parts[3].data, [0, 1, 2, 255]);
    assert_eq!(parts[4].data, pattern(5000, 2));
    assert_eq!(
        parts[4].headers[1],
        "Content-Type: application/octet-stream"
    );
    assert_eq!(parts[5].data, b"exactly");
}

#[test]
fn a_part_of_unknown_size_makes_the_form_chunked() {
    let (base, seen) = server(vec![OK.into()]);
    let streamed = pattern(30_000, 3);
    let form = Form::new()
        .text("a", "1")
        .part(
            "live",
            FormPart::reader(Cursor::new(streamed.clone())).file_name("live.bin"),
        )
        .text("b", "2");
    let mut response = small_chunks()
        .upload(&format!("{base}/up"))
        .method("POST")
        .send_form(form)
        .unwrap();
    assert_eq!(response.text().unwrap(), "ok");
    let seen = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(seen.chunked);
    assert_eq!(seen.header("content-length"), None);
    let parts = seen.parts();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[1].data, streamed);
    assert_eq!(
        parts[1].disposition(),
        "Content-Disposition: form-data; name=\"live\"; filename=\"live.bin\""
    );
    assert_eq!(parts[2].data, b"2");
}

#[test]
fn status_307_sends_the_whole_form_again_and_a_stream_part_cannot_follow() {
    let dir = TempDir::new("redirect");
    let data = pattern(120_000, 4);
    let path = dir.file("data.bin", &data);
    let redirect =
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: {base}/second\r\nContent-Length: 0\r\n\r\n";
    let (base, seen) = server(vec![redirect.into(), OK.into()]);
    let form = Form::new()
        .text("t", "v")
        .file("f", &path)
        .part("c", FormPart::seekable(Cursor::new(b"cursor".to_vec())));
    let mut response = small_chunks()
        .upload(&format!("{base}/first"))
        .method("POST")
        .max_redirects(3)
        .send_form(form)
        .unwrap();
    assert_eq!(response.text().unwrap(), "ok");
    let first = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    let second = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(second.head.starts_with("POST /second "), "{}", second.head);
    assert_eq!(first.body, second.body, "the same bytes, boundary included");
    assert_eq!(second.parts()[1].data, data);
    assert_eq!(second.parts()[2].data, b"cursor");

    // With a stream part, the form cannot be sent again: the redirect is an error.
    let (base, _seen) = server(vec![redirect.into()]);
    let form = Form::new()
        .text("t", "v")
        .part("s", FormPart::reader(Cursor::new(pattern(50_000, 5))));
    let err = small_chunks()
        .upload(&format!("{base}/first"))
        .method("POST")
        .max_redirects(3)
        .send_form(form)
        .unwrap_err();
    assert!(err.is_redirect_body_not_resendable(), "{err}");
}

#[test]
fn after_a_303_the_get_has_neither_the_form_nor_its_content_type() {
    let see_other = "HTTP/1.1 303 See Other\r\nLocation: /done\r\nContent-Length: 0\r\n\r\n";
    let (base, seen) = server(vec![see_other.into(), OK.into()]);
    let mut response = small_chunks()
        .upload(&format!("{base}/form"))
        .method("POST")
        .max_redirects(2)
        .send_form(Form::new().text("a", "1"))
        .unwrap();
    assert_eq!(response.text().unwrap(), "ok");
    let first = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(first.header("content-type").is_some());
    let second = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(second.head.starts_with("GET /done "), "{}", second.head);
    assert_eq!(second.header("content-type"), None, "{}", second.head);
    assert!(second.body.is_empty());
}

#[test]
fn an_unsized_part_with_a_required_length_is_refused_before_connecting() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/up", listener.local_addr().unwrap());
    let client = Client::new();
    let form = || {
        Form::new()
            .text("a", "1")
            .part("pipe", FormPart::reader(io::repeat(b'x')))
    };
    let by_form = client
        .upload(&url)
        .send_form(form().require_length(true))
        .unwrap_err();
    let by_upload = client
        .upload(&url)
        .content_length(100)
        .send_form(form())
        .unwrap_err();
    for err in [by_form, by_upload] {
        assert_eq!(err.stage(), chunkwire::Stage::Request, "{err}");
        assert!(err.to_string().contains("form part \"pipe\""), "{err}");
        assert_eq!(err.progress().wire_bytes_sent, 0);
    }
    thread::sleep(Duration::from_millis(100));
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        io::ErrorKind::WouldBlock,
        "nothing connected"
    );
}

#[test]
fn a_stated_length_that_is_not_the_forms_is_refused() {
    let err = Client::new()
        .upload("http://127.0.0.1:9/up")
        .content_length(3)
        .send_form(Form::new().text("a", "1"))
        .unwrap_err();
    assert!(err.to_string().contains("3 was stated"), "{err}");
}

/// Sends a form whose file part is changed by `change` when the first bytes go out (the
/// file's turn comes after a text part of several chunks), with or without a length.
fn send_changing(change: fn(&std::path::Path), chunked: bool) -> chunkwire::Error {
    let dir = TempDir::new(if chunked { "change-c" } else { "change-l" });
    let path = dir.file("grows.bin", &pattern(20_000, 6));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/up", listener.local_addr().unwrap());
    // The server reads whatever comes until the client gives up.
    thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = io::copy(&mut stream, &mut io::sink());
        }
    });
    let changed = std::cell::Cell::new(false);
    let target = path.clone();
    let client = small_chunks();
    let mut upload = client.upload(&url).method("POST").progress(move |_| {
        if !changed.replace(true) {
            change(&target);
        }
    });
    if chunked {
        upload = upload.trailer("X-Done", "1");
    }
    let form = Form::new()
        .text("lead", "l".repeat(8000))
        .file("f", &path)
        .text("after", "a");
    upload.send_form(form).unwrap_err()
}

#[test]
fn a_file_that_shrinks_grows_or_goes_while_it_is_sent_is_an_error() {
    fn shrink(path: &std::path::Path) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(100)
            .unwrap();
    }
    fn grow(path: &std::path::Path) {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(b"more")
            .unwrap();
    }
    fn remove(path: &std::path::Path) {
        std::fs::remove_file(path).unwrap();
    }
    for chunked in [false, true] {
        // Opened only when its turn comes, a file removed before then is named as missing.
        let err = send_changing(remove, chunked);
        assert_eq!(err.stage(), chunkwire::Stage::ReadSource, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("form part \"f\"") && text.contains("No such file"),
            "{text}"
        );
        let err = send_changing(shrink, chunked);
        assert_eq!(err.stage(), chunkwire::Stage::ReadSource, "{err}");
        let text = err.to_string();
        assert!(text.contains("form part \"f\""), "{text}");
        assert!(
            text.contains("changed size while it was sent: it ended after 100 of the 20000"),
            "{text}"
        );
        let err = send_changing(grow, chunked);
        assert!(
            err.to_string()
                .contains("holds more than the 20000 bytes announced"),
            "{err}"
        );
    }
}

/// Traced bytes, consecutive ones of a part joined.
type Labelled = Vec<(Part, Vec<u8>)>;

/// Keeps every traced byte of the request, by part.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Labelled>>);

impl Trace for Recorded {
    fn bytes(&mut self, direction: Direction, part: Part, bytes: &[u8]) {
        if direction == Direction::Sent {
            let mut seen = self.0.lock().unwrap();
            match seen.last_mut() {
                Some((last, kept)) if *last == part => kept.extend_from_slice(bytes),
                _ => seen.push((part, bytes.to_vec())),
            }
        }
    }

    fn note(&mut self, _: Direction, _: &str) {}
}

#[test]
fn the_trace_labels_boundaries_part_headers_and_part_data() {
    for chunked in [false, true] {
        let (base, seen) = server(vec![OK.into()]);
        let recorded = Recorded::default();
        let data = pattern(2500, 7);
        let part = if chunked {
            FormPart::reader(Cursor::new(data.clone()))
        } else {
            FormPart::bytes(data.clone())
        };
        let form = Form::new()
            .boundary("TheBoundary")
            .text("t", "value")
            .part("d", part.file_name("d.bin"));
        let mut response = small_chunks()
            .upload(&format!("{base}/up"))
            .method("POST")
            .trace(recorded.clone())
            .send_form(form)
            .unwrap();
        response.text().unwrap();
        seen.recv_timeout(Duration::from_secs(10)).unwrap();
        let recorded = recorded.0.lock().unwrap();
        // The form's own sections, with the chunk framing between them left out.
        let mut sections: Labelled = Vec::new();
        for (part, bytes) in recorded.iter() {
            if !matches!(
                part,
                Part::FormBoundary | Part::FormPartHeader | Part::FormPartData
            ) {
                assert!(
                    !matches!(part, Part::Body | Part::ChunkData),
                    "body bytes left unlabelled"
                );
                continue;
            }
            match sections.last_mut() {
                Some((last, kept)) if last == part => kept.extend_from_slice(bytes),
                _ => sections.push((*part, bytes.clone())),
            }
        }
        let expected: Labelled = vec![
            (Part::FormBoundary, b"--TheBoundary\r\n".to_vec()),
            (
                Part::FormPartHeader,
                b"Content-Disposition: form-data; name=\"t\"\r\n\r\n".to_vec(),
            ),
            (Part::FormPartData, b"value".to_vec()),
            (Part::FormBoundary, b"\r\n--TheBoundary\r\n".to_vec()),
            (
                Part::FormPartHeader,
                b"Content-Disposition: form-data; name=\"d\"; filename=\"d.bin\"\r\n\
                  Content-Type: application/octet-stream\r\n\r\n"
                    .to_vec(),
            ),
            (Part::FormPartData, data),
            (Part::FormBoundary, b"\r\n--TheBoundary--\r\n".to_vec()),
        ];
        let expected = if chunked {
            expected
        } else {
            // `FormPart::bytes` has no content type of its own.
            let mut e = expected;
            e[4].1 =
                b"Content-Disposition: form-data; name=\"d\"; filename=\"d.bin\"\r\n\r\n".to_vec();
            e
        };
        assert_eq!(sections, expected, "chunked: {chunked}");
        let framing = recorded
            .iter()
            .any(|(part, _)| matches!(part, Part::ChunkSize { .. }));
        assert_eq!(framing, chunked);
    }
}

#[test]
fn a_checksum_trailer_makes_a_sized_form_chunked_and_progress_knows_its_total() {
    let dir = TempDir::new("checksum");
    let path = dir.file("a.bin", &pattern(50_000, 8));
    let (base, seen) = server(vec![OK.into()]);
    let last = Arc::new(Mutex::new(None));
    let kept = Arc::clone(&last);
    let mut response = small_chunks()
        .upload(&format!("{base}/up"))
        .method("POST")
        .checksum_trailer(chunkwire::checksum::ChecksumAlgorithm::Sha256)
        .progress(move |p| *kept.lock().unwrap() = Some(*p))
        .send_form(Form::new().text("t", "v").file("f", &path))
        .unwrap();
    response.text().unwrap();
    let seen = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(seen.chunked);
    assert!(
        seen.trailers
            .to_ascii_lowercase()
            .contains("content-digest: sha-256=:"),
        "{:?}",
        seen.trailers
    );
    let last = last.lock().unwrap().expect("progress was reported");
    assert_eq!(last.total, Some(seen.body.len() as u64));
    assert_eq!(last.body_bytes_sent, seen.body.len() as u64);
    assert_eq!(seen.parts()[1].data, pattern(50_000, 8));
}

#[test]
fn expect_continue_holds_the_form_until_the_sink_says_go() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let form = Form::new()
        .text("t", "v")
        .part("b", FormPart::bytes(pattern(10_000, 9)));
    let expected_len = form_len(
        Form::new()
            .text("t", "v")
            .part("b", FormPart::bytes(pattern(10_000, 9))),
    );
    let mut response = small_chunks()
        .upload(&sink.url("/up"))
        .method("POST")
        .expect_continue(Duration::from_secs(10))
        .send_form(form)
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.interim_responses(), 1);
    response.text().unwrap();
    let report = sink.next_report(Duration::from_secs(10)).unwrap();
    // The boundary is random: the length differs from `expected_len`'s only if its length does.
    assert_eq!(report.bytes, expected_len);
}

/// The length of `form`'s body, as its reader states it.
fn form_len(form: Form<'_>) -> u64 {
    form.into_reader().unwrap().content_length().unwrap()
}

#[test]
fn an_early_refusal_stops_the_form_and_is_the_answer() {
    let dir = TempDir::new("early");
    let path = dir.file("big.bin", &pattern(4 << 20, 10));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/up", listener.local_addr().unwrap());
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            read_some(&mut stream, &mut head);
        }
        stream
            .write_all(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig")
            .unwrap();
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = io::copy(&mut stream, &mut io::sink());
    });
    let mut response = small_chunks()
        .upload(&url)
        .method("POST")
        .send_form(Form::new().file("f", &path))
        .unwrap();
    assert_eq!(response.status(), 413);
    assert!(!response.upload_complete());
    assert_eq!(response.text().unwrap(), "big");
}

#[test]
fn forms_go_in_a_set_of_uploads_too_with_a_307_followed() {
    let dir = TempDir::new("set");
    let redirect =
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: {base}/again\r\nContent-Length: 0\r\n\r\n";
    let (base, seen) = server(vec![redirect.into(), OK.into()]);
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let client = small_chunks();
    let mut uploads = client.uploads().unwrap();
    let mut expected = Vec::new();
    for i in 0..4u8 {
        let path = dir.file(
            &format!("f{i}.bin"),
            &pattern(10_000 * usize::from(i + 1), i),
        );
        let form = Form::new()
            .boundary(format!("set-{i}"))
            .text("i", i.to_string())
            .file("f", &path);
        expected.push(form_len(
            Form::new()
                .boundary(format!("set-{i}"))
                .text("i", i.to_string())
                .file("f", &path),
        ));
        uploads.add_form(client.upload(&sink.url("/set")).method("POST"), form);
    }
    let path = dir.file("redirected.bin", &pattern(30_000, 11));
    uploads.add_form(
        client
            .upload(&format!("{base}/first"))
            .method("POST")
            .max_redirects(2),
        Form::new().file("f", &path),
    );
    let mut done = 0;
    while let Some(finished) = uploads.next_finished() {
        let completed = finished.result.unwrap();
        assert_eq!(completed.status, 200);
        assert!(completed.upload_complete);
        done += 1;
    }
    assert_eq!(done, 5);
    let mut got: Vec<u64> = (0..4)
        .map(|_| sink.next_report(Duration::from_secs(10)).unwrap().bytes)
        .collect();
    got.sort_unstable();
    expected.sort_unstable();
    assert_eq!(got, expected);
    let first = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    let second = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(first.body, second.body);
    assert_eq!(second.parts()[0].data, pattern(30_000, 11));
}

#[test]
fn a_missing_file_or_a_directory_is_an_error_before_connecting() {
    let dir = TempDir::new("missing");
    for path in [dir.0.join("absent.bin"), dir.0.clone()] {
        let err = Client::new()
            .upload("http://127.0.0.1:9/up")
            .send_form(Form::new().file("f", &path))
            .unwrap_err();
        assert_eq!(err.stage(), chunkwire::Stage::ReadSource, "{err}");
        assert!(err.to_string().contains("form part \"f\""), "{err}");
        assert_eq!(err.progress().wire_bytes_sent, 0);
    }
}

#[test]
fn a_callers_multipart_type_gets_the_boundary_and_another_type_is_refused() {
    let (base, seen) = server(vec![OK.into()]);
    let mut response = Client::new()
        .upload(&format!("{base}/up"))
        .method("POST")
        .header("content-type", "multipart/related; type=\"text/plain\"")
        .send_form(Form::new().boundary("bb").text("a", "1"))
        .unwrap();
    response.text().unwrap();
    let seen = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    let types: Vec<&str> = seen
        .head
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("content-type:"))
        .collect();
    assert_eq!(
        types,
        ["Content-Type: multipart/related; type=\"text/plain\"; boundary=bb"]
    );
    let err = Client::new()
        .upload("http://127.0.0.1:9/up")
        .header("Content-Type", "text/plain")
        .send_form(Form::new().text("a", "1"))
        .unwrap_err();
    assert!(err.to_string().contains("not a multipart type"), "{err}");
}

#[test]
fn a_kept_connection_that_fails_sends_the_whole_form_again_on_a_new_one() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/up", listener.local_addr().unwrap());
    let (sender, bodies) = std::sync::mpsc::channel();
    thread::spawn(move || {
        // The first connection answers one upload, keeps the connection, then takes the
        // form and closes without a word; the second answers the form.
        let (mut kept, _) = listener.accept().unwrap();
        multipart::read_request(&mut kept);
        kept.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
        let _ = sender.send(multipart::read_request(&mut kept));
        drop(kept);
        let (mut fresh, _) = listener.accept().unwrap();
        let _ = sender.send(multipart::read_request(&mut fresh));
        fresh.write_all(OK.as_bytes()).unwrap();
    });
    let dir = TempDir::new("retry");
    let path = dir.file("r.bin", &pattern(70_000, 12));
    let client = small_chunks();
    client
        .upload(&url)
        .send(&b"first"[..])
        .unwrap()
        .text()
        .unwrap();
    // PUT: idempotent, so a request that went out whole may be sent again (RFC 9110
    // section 9.2.2); a POST would not be.
    let mut retried = client
        .upload(&url)
        .send_form(Form::new().text("t", "v").file("f", &path))
        .unwrap();
    assert_eq!(retried.text().unwrap(), "ok");
    assert!(!retried.connection_reused(), "answered on a new connection");
    let lost = bodies.recv_timeout(Duration::from_secs(10)).unwrap();
    let answered = bodies.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(lost.body, answered.body);
    assert_eq!(answered.parts()[1].data, pattern(70_000, 12));
}

#[test]
fn a_form_goes_over_tls_with_its_exact_length() {
    let tls = chunkwire::ServerTls::self_signed().unwrap();
    let sink = Sink::bind("127.0.0.1:0")
        .unwrap()
        .with_tls(tls.clone())
        .spawn()
        .unwrap();
    let config = chunkwire::TlsConfig::builder()
        .add_ca_pem(tls.ca_pem().as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let client = Client::builder()
        .chunk_size(4096)
        .tls_config(config)
        .build()
        .unwrap();
    let make = || {
        Form::new()
            .boundary("tls-boundary")
            .text("t", "v")
            .part("b", FormPart::bytes(pattern(100_000, 13)))
    };
    let mut response = client
        .upload(&sink.url("/tls"))
        .method("POST")
        .send_form(make())
        .unwrap();
    assert_eq!(response.status(), 200);
    let report = response.text().unwrap();
    assert!(
        report.contains("\"framing\":\"content-length\""),
        "{report}"
    );
    let sunk = sink.next_report(Duration::from_secs(10)).unwrap();
    assert_eq!(sunk.bytes, form_len(make()));
}
