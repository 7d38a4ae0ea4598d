//! Uploads checked by nginx, an HTTP/1.1 server no one here wrote: its WebDAV module writes
//! each PUT body to a file, and every file is compared byte for byte with what was sent.
//! nginx's access log is a second witness: the framing it saw, the bytes it read and the
//! connection each request came on. Needs nginx (`.ci/run` installs it); see
//! tests/support/nginx.rs.

use std::fs::File;
use std::time::{Duration, Instant};

use chunkwire::{Client, Response};

#[path = "support/nginx.rs"]
mod nginx;
use nginx::{CLOSE, DISCARD, Nginx, Pattern, SMALL, pattern};

/// Generous limits for a loaded machine; a hang fails the test instead of stalling it.
fn client(chunk: usize) -> Client {
    Client::builder()
        .chunk_size(chunk)
        .stall_timeout(Some(Duration::from_secs(20)))
        .max_time(Some(Duration::from_secs(60)))
        .build()
        .unwrap()
}

/// Reads the response to its end (so the connection can be kept) and returns its text.
fn finish(mut response: Response) -> String {
    response.text().unwrap()
}

fn header<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Checks nginx took the upload as a new file (201) or a replaced one (204), whole.
fn assert_stored(response: &Response, len: usize) {
    assert!(
        matches!(response.status().as_u16(), 201 | 204),
        "status {}",
        response.status()
    );
    assert!(response.upload_complete());
    assert_eq!(response.progress().body_bytes_sent, len as u64);
}

#[test]
fn chunked_puts_around_the_chunk_size_land_intact() {
    let server = Nginx::start();
    let chunk = 16 * 1024;
    let client = client(chunk);
    let sizes = [0, 1, chunk - 1, chunk, chunk + 1];
    let mut wire = Vec::new();
    for (seed, len) in sizes.into_iter().enumerate() {
        let data = pattern(seed as u64, len);
        let path = format!("/sizes/{len}");
        let response = client.upload(&server.url(&path)).send(&data[..]).unwrap();
        assert_eq!(response.status(), 201, "len {len}");
        assert_stored(&response, len);
        wire.push(response.progress().wire_bytes_sent);
        assert_eq!(finish(response), "");
        server.assert_file(&path, &data);
    }
    let logged = server.wait_logged(sizes.len());
    for ((entry, len), wire) in logged.iter().zip(sizes).zip(wire) {
        assert_eq!(entry.method, "PUT");
        assert_eq!(entry.uri, format!("/sizes/{len}"));
        assert_eq!(entry.status, 201);
        assert_eq!(entry.transfer_encoding.as_deref(), Some("chunked"));
        assert_eq!(entry.content_length, None);
        // Head, chunk framing and body: nginx read exactly what chunkwire says it wrote.
        assert_eq!(entry.request_length, wire as i64, "len {len}");
    }
}

#[test]
fn a_few_mib_in_small_chunks_land_intact() {
    let server = Nginx::start();
    let len = 4 * 1024 * 1024 + 5;
    let chunk = 1024;
    let path = "/deep/er/and/deeper/many-chunks.bin";
    let started = Instant::now();
    let response = client(chunk)
        .upload(&server.url(path))
        .send(Pattern::new(42, len as u64))
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_stored(&response, len);
    let wire = response.progress().wire_bytes_sent;
    finish(response);
    server.assert_file(path, &pattern(42, len));
    // 4097 chunks, each with its size line and CRLF.
    let chunks = len.div_ceil(chunk) as u64;
    assert!(wire > len as u64 + chunks * 5, "{wire}");
    assert_eq!(server.wait_logged(1)[0].request_length, wire as i64);
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn content_length_puts_land_intact() {
    let server = Nginx::start();
    let client = client(10_000);
    for (seed, len) in [(1u64, 0usize), (2, 1), (3, 1_000_003)] {
        let data = pattern(seed, len);
        let path = format!("/length/{len}");
        let response = client
            .upload(&server.url(&path))
            .content_length(len as u64)
            .send(&data[..])
            .unwrap();
        assert_eq!(response.status(), 201, "len {len}");
        assert_stored(&response, len);
        finish(response);
        server.assert_file(&path, &data);
    }
    // A file as the body, sent seekable: nginx's own copy of an earlier upload goes back
    // to it under another name.
    let source = server.file_path("/length/1000003");
    let file = File::open(&source).unwrap();
    let len = file.metadata().unwrap().len();
    let response = client
        .upload(&server.url("/length/copy"))
        .content_length(len)
        .send_seekable(file)
        .unwrap();
    assert_eq!(response.status(), 201);
    finish(response);
    server.assert_file("/length/copy", &pattern(3, 1_000_003));

    for entry in server.wait_logged(4) {
        assert_eq!(entry.transfer_encoding, None, "{entry:?}");
        assert!(entry.content_length.is_some(), "{entry:?}");
    }
}

#[test]
fn trailers_are_accepted_and_kept_out_of_the_file() {
    let server = Nginx::start();
    let data = pattern(9, 100_000);
    let client = client(8192);
    let upload = client
        .upload(&server.url("/trailers/with"))
        .trailer("X-Upload-Note", "all there")
        .trailers_with(&["X-Byte-Count"], || {
            vec![("X-Byte-Count".to_owned(), "100000".to_owned())]
        });
    #[cfg(feature = "checksum")]
    let upload = upload.checksum_trailer(chunkwire::checksum::ChecksumAlgorithm::Sha256);
    let response = upload.send(&data[..]).unwrap();
    assert_eq!(response.status(), 201);
    assert_stored(&response, data.len());
    let wire = response.progress().wire_bytes_sent;
    finish(response);
    server.assert_file("/trailers/with", &data);
    let entry = &server.wait_logged(1)[0];
    let announced = entry.trailer.as_deref().unwrap_or_default();
    assert!(
        announced.starts_with("X-Upload-Note, X-Byte-Count"),
        "{entry:?}"
    );
    // nginx read the trailer section too, up to its final empty line.
    assert_eq!(entry.request_length, wire as i64);
}

#[test]
fn expect_100_continue_gets_the_go_ahead_without_waiting_out_the_timeout() {
    let server = Nginx::start();
    let client = client(16 * 1024);
    // Were the 100 missed, each upload would wait this long before sending.
    let expect_timeout = Duration::from_secs(20);
    let uploads = [
        ("/expect/chunked", 300_000, false),
        ("/expect/length", 300_000, true),
        ("/expect/chunked-empty", 0, false),
        ("/expect/length-empty", 0, true),
    ];
    for (seed, (path, len, stated)) in uploads.into_iter().enumerate() {
        let data = pattern(seed as u64, len);
        let started = Instant::now();
        let mut upload = client
            .upload(&server.url(path))
            .expect_continue(expect_timeout);
        if stated {
            upload = upload.content_length(len as u64);
        }
        let response = upload.send(&data[..]).unwrap();
        let took = started.elapsed();
        assert_eq!(response.status(), 201, "{path}");
        assert_stored(&response, data.len());
        // A stated empty body has nothing to hold back: chunkwire sends no Expect, and
        // nginx no 100. A chunked body, even an empty one, waits for its 100.
        let interim = if stated && len == 0 { 0 } else { 1 };
        assert_eq!(response.interim_responses(), interim, "{path}");
        assert!(took < expect_timeout / 2, "{path} took {took:?}");
        finish(response);
        server.assert_file(path, &data);
    }
    let logged = server.wait_logged(uploads.len());
    for (entry, (_, len, stated)) in logged.iter().zip(uploads) {
        let expect = (!stated || len > 0).then_some("100-continue");
        assert_eq!(entry.expect.as_deref(), expect, "{entry:?}");
    }
}

/// A body far larger than the 1 KiB the small location takes; made as it is read.
const TOO_LARGE: u64 = 256 * 1024 * 1024;

/// Checks a refusal: 413, the upload stopped early, quickly, and no file written.
fn assert_refused(server: &Nginx, response: Response, path: &str, started: Instant) {
    let took = started.elapsed();
    assert_eq!(response.status(), 413, "{path}");
    assert_eq!(header(&response, "connection"), Some("close"), "{path}");
    assert!(!response.upload_complete(), "{path}");
    let sent = response.progress().body_bytes_sent;
    assert!(sent < TOO_LARGE / 4, "{path}: {sent} body bytes sent");
    assert!(took < Duration::from_secs(15), "{path} took {took:?}");
    let page = finish(response);
    assert!(page.contains("413"), "{page}");
    assert_eq!(server.try_read(path), None, "{path}");
}

#[test]
fn the_small_location_refuses_a_large_body_early_with_413() {
    let server = Nginx::start();
    let client = client(16 * 1024);

    // Chunked: nginx sees the first chunk-size line is over the limit.
    let path = format!("{SMALL}chunked");
    let started = Instant::now();
    let response = client
        .upload(&server.url(&path))
        .send(Pattern::new(1, TOO_LARGE))
        .unwrap();
    assert_refused(&server, response, &path, started);

    // A stated length over the limit is refused on the head alone.
    let path = format!("{SMALL}length");
    let started = Instant::now();
    let response = client
        .upload(&server.url(&path))
        .content_length(TOO_LARGE)
        .send(Pattern::new(2, TOO_LARGE))
        .unwrap();
    assert_refused(&server, response, &path, started);

    // With Expect, nginx answers 413 instead of 100: no body byte goes out.
    let path = format!("{SMALL}expect");
    let started = Instant::now();
    let response = client
        .upload(&server.url(&path))
        .content_length(TOO_LARGE)
        .expect_continue(Duration::from_secs(20))
        .send(Pattern::new(3, TOO_LARGE))
        .unwrap();
    assert_eq!(response.progress().body_bytes_sent, 0);
    assert_eq!(response.interim_responses(), 0);
    assert_refused(&server, response, &path, started);

    // A body within the limit is taken there, and the client still works after refusals.
    let data = pattern(4, 1000);
    let response = client
        .upload(&server.url(&format!("{SMALL}fits")))
        .send(&data[..])
        .unwrap();
    assert_eq!(response.status(), 201);
    // Each refusal closed its connection.
    assert!(!response.connection_reused());
    finish(response);
    server.assert_file(&format!("{SMALL}fits"), &data);

    let logged = server.wait_logged(4);
    let statuses: Vec<u16> = logged.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [413, 413, 413, 201]);
}

#[test]
fn uploads_in_a_row_share_one_kept_connection() {
    let server = Nginx::start();
    let client = client(4096);
    // (path, body length, stated length?)
    let uploads = [
        ("/row/a", 10, false),
        ("/row/b", 100_000, false),
        ("/row/c", 0, false),
        ("/row/d", 54_321, true),
        ("/row/a", 4096, false), // replaces the first: 204
        ("/row/e", 1, true),
    ];
    for (i, (path, len, stated)) in uploads.into_iter().enumerate() {
        let data = pattern(100 + i as u64, len);
        let mut upload = client.upload(&server.url(path));
        if stated {
            upload = upload.content_length(len as u64);
        }
        let response = upload.send(&data[..]).unwrap();
        assert_stored(&response, len);
        let replaced = i == 4;
        assert_eq!(
            response.status(),
            if replaced { 204 } else { 201 },
            "upload {i}"
        );
        assert_eq!(response.connection_reused(), i > 0, "upload {i}");
        finish(response);
        server.assert_file(path, &data);
    }
    let logged = server.wait_logged(uploads.len());
    for (i, entry) in logged.iter().enumerate() {
        assert_eq!(entry.connection, logged[0].connection, "{logged:#?}");
        assert_eq!(entry.connection_requests, i as u64 + 1, "{logged:#?}");
    }
}

#[test]
fn a_connection_nginx_closes_is_not_reused() {
    let server = Nginx::start();
    let client = client(4096);
    let paths = [
        format!("{CLOSE}a"),
        format!("{CLOSE}b"),
        "/open/a".to_owned(),
        "/open/b".to_owned(),
    ];
    for (i, path) in paths.iter().enumerate() {
        let data = pattern(300 + i as u64, 5000 * i);
        let response = client.upload(&server.url(path)).send(&data[..]).unwrap();
        assert_stored(&response, data.len());
        let closing = path.starts_with(CLOSE);
        let expected = if closing { "close" } else { "keep-alive" };
        assert_eq!(header(&response, "connection"), Some(expected), "{path}");
        // Only the last follows a response that kept its connection.
        assert_eq!(response.connection_reused(), i == 3, "{path}");
        finish(response);
        server.assert_file(path, &data);
    }
    let connections: Vec<u64> = server
        .wait_logged(paths.len())
        .iter()
        .map(|e| e.connection)
        .collect();
    assert_eq!(connections[3], connections[2], "{connections:?}");
    assert!(connections[0] != connections[1] && connections[1] != connections[2]);
}

#[test]
fn an_early_200_lets_the_body_go_on_to_its_end_and_keeps_the_connection() {
    let server = Nginx::start();
    let client = client(16 * 1024);
    let len = 3 * 1024 * 1024;
    for i in 0..2 {
        let response = client
            .upload(&server.url(&format!("{DISCARD}{i}")))
            .send(Pattern::new(i, len))
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.upload_complete());
        assert_eq!(response.progress().body_bytes_sent, len);
        assert_eq!(response.connection_reused(), i > 0);
        assert_eq!(finish(response), "discarded\n");
    }
    // nginx discarded the whole body, so the connection is in step for the next upload.
    let response = client
        .upload(&server.url("/after"))
        .send(&b"x"[..])
        .unwrap();
    assert!(response.connection_reused());
    finish(response);
    server.assert_file("/after", b"x");
    let logged = server.wait_logged(3);
    for entry in &logged[..2] {
        // Logged as it answered, with the head and at most a first read of the body:
        // nginx does not count what it throws away. (For the second its count can even
        // be negative, when its head came in one read with the end of the first body.)
        assert_eq!(entry.status, 200);
        assert!(entry.request_length < 64 * 1024, "{entry:?}");
        assert_eq!(entry.connection, logged[2].connection);
    }
    assert_eq!(server.try_read(&format!("{DISCARD}0")), None);
}

#[cfg(feature = "sink")]
mod tls {
    use super::*;
    use chunkwire::TlsConfig;

    fn tls_client(server: &Nginx, chunk: usize) -> Client {
        let trust = TlsConfig::builder()
            .add_ca_pem(server.cert_pem().as_bytes())
            .unwrap()
            .build()
            .unwrap();
        Client::builder()
            .chunk_size(chunk)
            .tls_config(trust)
            .stall_timeout(Some(Duration::from_secs(20)))
            .max_time(Some(Duration::from_secs(60)))
            .build()
            .unwrap()
    }

    #[test]
    fn over_tls_uploads_land_intact_on_one_kept_connection() {
        let server = Nginx::start_tls();
        let chunk = 20_000; // not a multiple of the 16 KiB TLS record
        let client = tls_client(&server, chunk);
        let sizes = [0, 1, chunk - 1, chunk, chunk + 1, 2 * 1024 * 1024 + 3];
        for (i, len) in sizes.into_iter().enumerate() {
            let data = pattern(200 + i as u64, len);
            let path = format!("/tls/{len}");
            let mut upload = client.upload(&server.tls_url(&path));
            if i == 2 {
                upload = upload.content_length(len as u64);
            }
            if i == 3 {
                upload = upload
                    .expect_continue(Duration::from_secs(20))
                    .trailer("X-Note", "tls");
            }
            let started = Instant::now();
            let response = upload.send(&data[..]).unwrap();
            assert_eq!(response.status(), 201, "len {len}");
            assert_stored(&response, len);
            assert!(started.elapsed() < Duration::from_secs(10));
            assert_eq!(response.connection_reused(), i > 0, "len {len}");
            if i == 3 {
                assert_eq!(response.interim_responses(), 1);
            }
            let summary = response.tls().expect("a TLS connection");
            assert_eq!(summary.alpn.as_deref(), Some("http/1.1"), "{summary:?}");
            assert_eq!(summary.version, "TLSv1.3", "{summary:?}");
            finish(response);
            server.assert_file(&path, &data);
        }
        let logged = server.wait_logged(sizes.len());
        for (i, entry) in logged.iter().enumerate() {
            assert_eq!(entry.connection, logged[0].connection, "{logged:#?}");
            assert_eq!(entry.connection_requests, i as u64 + 1, "{logged:#?}");
        }
        // The plain port of the same server is another origin: a new connection.
        let response = client
            .upload(&server.url("/plain"))
            .send(&b"x"[..])
            .unwrap();
        assert!(!response.connection_reused());
        assert!(response.tls().is_none());
        finish(response);
        server.assert_file("/plain", b"x");
    }

    #[test]
    fn over_tls_the_small_location_refuses_early_with_413() {
        let server = Nginx::start_tls();
        let path = format!("{SMALL}tls");
        let started = Instant::now();
        let response = tls_client(&server, 16 * 1024)
            .upload(&server.tls_url(&path))
            .send(Pattern::new(7, TOO_LARGE))
            .unwrap();
        assert_refused(&server, response, &path, started);
    }
}

#[cfg(feature = "sink")]
#[test]
fn two_hundred_uploads_at_once_on_one_thread_land_whole() {
    // The set of uploads (Client::uploads) against a server no one here wrote: 200 at
    // once, chunked and with Content-Length, plain and over TLS, each file compared byte
    // for byte.
    let server = Nginx::start_tls();
    let trust = chunkwire::TlsConfig::builder()
        .add_ca_pem(server.cert_pem().as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let client = Client::builder()
        .chunk_size(4096)
        .tls_config(trust)
        .stall_timeout(Some(Duration::from_secs(20)))
        .max_time(Some(Duration::from_secs(60)))
        .build()
        .unwrap();
    let bodies: Vec<Vec<u8>> = (0..200u64)
        .map(|i| pattern(1000 + i, (i as usize * 4093) % 60_000))
        .collect();
    let mut uploads = client.uploads().unwrap().max_active(200);
    let mut paths = std::collections::HashMap::new();
    for (i, body) in bodies.iter().enumerate() {
        let path = format!("/many/{i}.bin");
        let url = if i % 4 == 3 {
            server.tls_url(&path)
        } else {
            server.url(&path)
        };
        let mut upload = client.upload(&url);
        if i % 2 == 1 {
            upload = upload.content_length(body.len() as u64);
        }
        let id = uploads.add(upload, &body[..]);
        paths.insert(id, (path, i));
    }
    let mut stored = 0;
    for finished in uploads.by_ref() {
        let (path, i) = &paths[&finished.id];
        let completed = finished.result.unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            matches!(completed.status.as_u16(), 201 | 204),
            "{path}: {}",
            completed.status
        );
        assert!(completed.upload_complete, "{path}");
        server.assert_file(path, &bodies[*i]);
        stored += 1;
    }
    assert_eq!(stored, 200);
}

#[test]
fn coalesced_writes_of_seekable_bodies_land_intact() {
    // A seekable body goes out with its head and last chunk in the same writes as its
    // data (exchange rule 7): nginx must take those bytes as it takes the head-first ones,
    // one by one and in a set, chunked and with Content-Length, with trailers.
    let server = Nginx::start();
    let chunk = 16 * 1024;
    let client = client(chunk);
    let sizes = [0, 1, 100, chunk - 1, chunk, chunk + 1, 3 * chunk + 7];
    for (seed, len) in sizes.into_iter().enumerate() {
        let data = pattern(100 + seed as u64, len);
        let chunked = format!("/coalesced/chunked-{len}");
        let response = client
            .upload(&server.url(&chunked))
            .trailer("X-Sum", "kept-out")
            .send_seekable(std::io::Cursor::new(&data[..]))
            .unwrap();
        assert_stored(&response, len);
        finish(response);
        server.assert_file(&chunked, &data);
        let sized = format!("/coalesced/length-{len}");
        let response = client
            .upload(&server.url(&sized))
            .content_length(len as u64)
            .send_seekable(std::io::Cursor::new(&data[..]))
            .unwrap();
        assert_stored(&response, len);
        finish(response);
        server.assert_file(&sized, &data);
    }
    let bodies: Vec<Vec<u8>> = (0..40)
        .map(|i| pattern(200 + i, (i as usize * 977) % 5000))
        .collect();
    let mut uploads = client.uploads().unwrap().max_active(8);
    let mut paths = std::collections::HashMap::new();
    for (i, body) in bodies.iter().enumerate() {
        let path = format!("/coalesced/set-{i}");
        let id = uploads.add_seekable(
            client.upload(&server.url(&path)),
            std::io::Cursor::new(&body[..]),
        );
        paths.insert(id, (path, i));
    }
    for finished in uploads.by_ref() {
        let (path, i) = &paths[&finished.id];
        let completed = finished.result.unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(matches!(completed.status.as_u16(), 201 | 204), "{path}");
        server.assert_file(path, &bodies[*i]);
    }
}
