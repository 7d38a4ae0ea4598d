//! Uploads over TLS: the same framing on the same buffer, with rustls under it. Checked
//! against our sink (rustls server) and against OpenSSL's `s_server`, a TLS peer no one here
//! wrote; refusals of untrusted and wrong-host certificates; early responses, mid-upload
//! closes and truncated bodies over TLS.
#![cfg(feature = "sink")]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use chunkwire::sink::Sink;
use chunkwire::{Client, ServerTls, Stage, TlsConfig};

fn trusting(tls: &ServerTls) -> TlsConfig {
    TlsConfig::builder()
        .add_ca_pem(tls.ca_pem().as_bytes())
        .unwrap()
        .build()
        .unwrap()
}

fn client(tls: &ServerTls, chunk: usize) -> Client {
    Client::builder()
        .chunk_size(chunk)
        .tls_config(trusting(tls))
        .stall_timeout(Some(Duration::from_secs(10)))
        .max_time(Some(Duration::from_secs(30)))
        .build()
        .unwrap()
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 10) as u8)
        .collect()
}

#[test]
fn sizes_around_the_record_and_buffer_sizes_arrive_intact() {
    let tls = ServerTls::self_signed().unwrap();
    let sink = Sink::bind("127.0.0.1:0")
        .unwrap()
        .with_tls(tls.clone())
        .spawn()
        .unwrap();
    let chunk = 20_000; // not a multiple of the 16 KiB TLS record
    let client = client(&tls, chunk);
    let record = 16 * 1024;
    for len in [
        0,
        1,
        record - 1,
        record,
        record + 1,
        chunk - 1,
        chunk,
        chunk + 1,
        3 << 20,
    ] {
        let data = pattern(len);
        let mut response = client.upload(&sink.url("/tls")).send(&data[..]).unwrap();
        assert_eq!(response.status(), 200);
        let summary = response.tls().expect("a TLS connection");
        assert_eq!(summary.alpn.as_deref(), Some("http/1.1"));
        assert!(summary.version.starts_with("TLSv1"), "{summary:?}");
        response.text().unwrap();
        let report = sink.next_report(Duration::from_secs(10)).unwrap();
        assert_eq!(report.bytes, len as u64, "len {len}");
        assert_eq!(report.crc32, crc32fast::hash(&data), "len {len}");
        assert_eq!(report.chunks, len.div_ceil(chunk) as u64, "len {len}");
    }
}

/// Keeps the notes and the sent plaintext of a trace.
#[derive(Default)]
struct Seen {
    notes: Vec<String>,
    sent: Vec<u8>,
}

struct Keep(std::sync::Arc<std::sync::Mutex<Seen>>);

impl chunkwire::trace::Trace for Keep {
    fn bytes(
        &mut self,
        direction: chunkwire::trace::Direction,
        _: chunkwire::trace::Part,
        bytes: &[u8],
    ) {
        if direction == chunkwire::trace::Direction::Sent {
            self.0.lock().unwrap().sent.extend_from_slice(bytes);
        }
    }

    fn note(&mut self, _: chunkwire::trace::Direction, text: &str) {
        self.0.lock().unwrap().notes.push(text.to_owned());
    }
}

#[test]
fn the_trace_over_tls_shows_the_handshake_and_the_plaintext() {
    let tls = ServerTls::self_signed().unwrap();
    let sink = Sink::bind("127.0.0.1:0")
        .unwrap()
        .with_tls(tls.clone())
        .spawn()
        .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Seen::default()));
    let mut response = client(&tls, 1024)
        .upload(&sink.url("/traced"))
        .trace(Keep(seen.clone()))
        .send(&b"plaintext body"[..])
        .unwrap();
    response.text().unwrap();
    drop(response);
    let seen = seen.lock().unwrap();
    let handshake = seen
        .notes
        .iter()
        .find(|n| n.starts_with("TLS handshake"))
        .expect("a handshake note");
    assert!(handshake.contains("ALPN http/1.1"), "{handshake}");
    assert!(handshake.contains("CN=chunkwire sink"), "{handshake}");
    let sent = String::from_utf8_lossy(&seen.sent);
    assert!(sent.starts_with("PUT /traced HTTP/1.1\r\n"), "{sent}");
    assert!(sent.contains("e\r\nplaintext body\r\n0\r\n\r\n"), "{sent}");
}

#[test]
fn an_untrusted_certificate_is_refused_naming_the_host() {
    let tls = ServerTls::self_signed().unwrap();
    let sink = Sink::bind("127.0.0.1:0")
        .unwrap()
        .with_tls(tls)
        .spawn()
        .unwrap();
    // The default trust store (webpki-roots) does not know the sink's CA.
    let err = chunkwire::put(&sink.url("/x"), &b"secret"[..]).unwrap_err();
    assert_eq!(err.stage(), Stage::TlsHandshake, "{err}");
    let message = err.to_string();
    assert!(message.contains("UnknownIssuer"), "{message}");
    assert!(message.contains(&sink.addr().to_string()), "{message}");
    assert_eq!(err.progress().body_bytes_sent, 0);
    assert!(
        sink.next_report(Duration::from_millis(200)).is_none(),
        "nothing may arrive"
    );
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    let tls = ServerTls::for_names(&["upload.example"]).unwrap();
    let sink = Sink::bind("127.0.0.1:0")
        .unwrap()
        .with_tls(tls.clone())
        .spawn()
        .unwrap();
    let url = format!("https://localhost:{}/x", sink.addr().port());
    let err = client(&tls, 1024)
        .upload(&url)
        .send(&b"secret"[..])
        .unwrap_err();
    assert_eq!(err.stage(), Stage::TlsHandshake, "{err}");
    let message = err.to_string();
    assert!(message.contains("not valid for name"), "{message}");
    assert!(message.contains("localhost"), "{message}");
}

#[test]
fn mutual_tls_presents_the_client_certificate_and_is_refused_without_one() {
    let tls = ServerTls::self_signed()
        .unwrap()
        .requiring_client_cert()
        .unwrap();
    let sink = Sink::bind("127.0.0.1:0")
        .unwrap()
        .with_tls(tls.clone())
        .spawn()
        .unwrap();
    let (cert, key) = tls.issue_client_cert("uploader").unwrap();
    let with_cert = TlsConfig::builder()
        .add_ca_pem(tls.ca_pem().as_bytes())
        .unwrap()
        .client_auth_pem(cert.as_bytes(), key.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let signed_client = Client::builder().tls_config(with_cert).build().unwrap();
    let mut response = signed_client
        .upload(&sink.url("/mtls"))
        .send(&b"signed"[..])
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().unwrap();
    assert_eq!(sink.next_report(Duration::from_secs(5)).unwrap().bytes, 6);

    // Without a certificate the server refuses; TLS 1.3 may only say so after the
    // handshake, so the error is in the handshake or in the exchange, never a response.
    let err = client(&tls, 1024)
        .upload(&sink.url("/mtls"))
        .send(&b"unsigned"[..]);
    let err = err.and_then(|mut r| r.text()).unwrap_err();
    assert!(
        matches!(
            err.stage(),
            Stage::TlsHandshake | Stage::Send | Stage::Receive
        ),
        "{err}"
    );
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert!(sink.next_report(Duration::from_millis(200)).is_none());
}

#[test]
fn an_expired_certificate_is_refused() {
    let tls = ServerTls::expired(&["127.0.0.1"]).unwrap();
    let sink = Sink::bind("127.0.0.1:0")
        .unwrap()
        .with_tls(tls.clone())
        .spawn()
        .unwrap();
    let err = client(&tls, 1024)
        .upload(&sink.url("/x"))
        .send(&b"secret"[..])
        .unwrap_err();
    assert_eq!(err.stage(), Stage::TlsHandshake, "{err}");
    let message = err.to_string();
    assert!(message.contains("expired"), "{message}");
    assert!(message.contains("127.0.0.1"), "{message}");
}

#[test]
fn a_plain_http_server_is_a_handshake_error_not_a_fallback() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/", listener.local_addr().unwrap());
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut hello = [0u8; 512];
        let _ = stream.read(&mut hello);
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    });
    let tls = ServerTls::self_signed().unwrap();
    let err = client(&tls, 1024).upload(&url).send(&b"x"[..]).unwrap_err();
    assert_eq!(err.stage(), Stage::TlsHandshake, "{err}");
    server.join().unwrap();
}

/// An endless body.
struct Endless;

impl Read for Endless {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        out.fill(b'e');
        Ok(out.len())
    }
}

/// A TLS server on a thread: `serve` gets the stream after the request head was read.
fn tls_server(
    tls: &ServerTls,
    serve: impl FnOnce(&mut chunkwire::ServerStream) + Send + 'static,
) -> (String, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/up", listener.local_addr().unwrap());
    let tls = tls.clone();
    let handle = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut stream = tls.accept(tcp).unwrap();
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !seen.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            seen.push(byte[0]);
        }
        serve(&mut stream);
    });
    (url, handle)
}

#[test]
fn an_early_413_over_tls_is_returned_as_the_response() {
    let tls = ServerTls::self_signed().unwrap();
    let (url, server) = tls_server(&tls, |stream| {
        stream
            .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nbig!")
            .unwrap();
        stream.flush().unwrap();
        let mut drain = [0u8; 65536];
        while stream.read(&mut drain).map(|n| n > 0).unwrap_or(false) {}
    });
    let mut response = client(&tls, 16 * 1024).upload(&url).send(Endless).unwrap();
    assert_eq!(response.status(), 413);
    assert!(!response.upload_complete());
    assert_eq!(response.text().unwrap(), "big!");
    drop(response);
    server.join().unwrap();
}

#[test]
fn a_close_mid_upload_over_tls_is_an_error_without_a_hang() {
    let tls = ServerTls::self_signed().unwrap();
    let (url, server) = tls_server(&tls, |stream| {
        let mut some = vec![0u8; 200_000];
        stream.read_exact(&mut some).unwrap();
        // Dropping the stream closes TCP without close_notify.
    });
    let started = Instant::now();
    let err = client(&tls, 16 * 1024)
        .upload(&url)
        .send(Endless)
        .unwrap_err();
    assert_eq!(err.stage(), Stage::Send, "{err}");
    assert!(err.progress().body_bytes_sent >= 150_000, "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    server.join().unwrap();
}

/// Reads the rest of a small chunked request, up to its last chunk.
fn read_to_last_chunk(stream: &mut chunkwire::ServerStream) {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"0\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        seen.push(byte[0]);
    }
}

#[test]
fn a_close_delimited_body_without_close_notify_is_truncation() {
    let tls = ServerTls::self_signed().unwrap();
    let (url, server) = tls_server(&tls, |stream| {
        read_to_last_chunk(stream);
        stream.write_all(b"HTTP/1.1 200 OK\r\n\r\npartial").unwrap();
        stream.flush().unwrap();
        // No close_notify: an attacker cutting the TCP connection looks like this.
    });
    let mut response = client(&tls, 1024).upload(&url).send(&b"x"[..]).unwrap();
    assert_eq!(response.status(), 200);
    let err = response.text().unwrap_err();
    assert_eq!(err.stage(), Stage::Receive, "{err}");
    assert!(err.to_string().contains("close_notify"), "{err}");
    server.join().unwrap();
}

#[test]
fn a_close_delimited_body_with_close_notify_is_complete() {
    let tls = ServerTls::self_signed().unwrap();
    let (url, server) = tls_server(&tls, |stream| {
        read_to_last_chunk(stream);
        stream.write_all(b"HTTP/1.1 200 OK\r\n\r\nwhole").unwrap();
        stream.close();
    });
    let mut response = client(&tls, 1024).upload(&url).send(&b"x"[..]).unwrap();
    assert_eq!(response.text().unwrap(), "whole");
    server.join().unwrap();
}

/// OpenSSL's `s_server` prints the plaintext it receives and sends what it reads on stdin.
fn openssl_peer(protocol: &str, len: usize) {
    let dir = std::env::temp_dir().join(format!(
        "chunkwire-openssl-{}-{protocol}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status();
    match made {
        Ok(status) if status.success() => {}
        _ => panic!("openssl is needed for this test (.ci/run installs it)"),
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet", protocol, "-alpn", "http/1.1"])
        .arg("-accept")
        .arg(port.to_string())
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut to_server = server.stdin.take().unwrap();
    let from_server = server.stdout.take().unwrap();
    // s_server says nothing when ready with -quiet: wait until the port answers. The probe
    // connection closes at once and s_server goes back to accepting.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s_server did not start");
        thread::sleep(Duration::from_millis(20));
    }

    let data = pattern(len);
    let expected = data.clone();
    let reader = thread::spawn(move || {
        // Decode what s_server received: head, then the chunked body.
        let mut input = BufReader::new(from_server);
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut line = Vec::new();
            input.read_until(b'\n', &mut line).unwrap();
            assert!(!line.is_empty(), "s_server output ended in the head");
            head.extend_from_slice(&line);
        }
        let mut body = Vec::new();
        loop {
            let mut size_line = String::new();
            input.read_line(&mut size_line).unwrap();
            let size = usize::from_str_radix(size_line.trim_end(), 16).unwrap();
            if size == 0 {
                let mut end = String::new();
                input.read_line(&mut end).unwrap();
                break;
            }
            let mut chunk = vec![0u8; size + 2];
            input.read_exact(&mut chunk).unwrap();
            assert_eq!(&chunk[size..], b"\r\n");
            body.extend_from_slice(&chunk[..size]);
        }
        // Only now answer, so the answer is not an early response.
        to_server
            .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
        to_server.flush().unwrap();
        (String::from_utf8_lossy(&head).into_owned(), body, to_server)
    });
    let config = TlsConfig::builder()
        .add_ca_pem_file(&cert)
        .unwrap()
        .build()
        .unwrap();
    let client = Client::builder()
        .chunk_size(10_000)
        .tls_config(config)
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}/openssl");
    let mut response = client.upload(&url).send(&data[..]).unwrap();
    assert_eq!(response.status(), 201);
    let version = response.tls().unwrap().version;
    let body = {
        let mut out = Vec::new();
        let mut chunk = [0u8; 2];
        response.read_exact(&mut chunk).unwrap();
        out.extend_from_slice(&chunk);
        out
    };
    assert_eq!(body, b"ok");
    drop(response);
    let (head, received, _stdin) = reader.join().unwrap();
    assert!(head.starts_with("PUT /openssl HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("Host: localhost:{port}\r\n")),
        "{head}"
    );
    assert!(received == expected, "s_server received other bytes");
    assert_eq!(
        version,
        if protocol == "-tls1_2" {
            "TLSv1.2"
        } else {
            "TLSv1.3"
        }
    );
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn openssl_s_server_receives_every_byte_over_tls_1_3() {
    openssl_peer("-tls1_3", 100_003);
}

#[test]
fn openssl_s_server_receives_every_byte_over_tls_1_2() {
    openssl_peer("-tls1_2", 65_536);
}
