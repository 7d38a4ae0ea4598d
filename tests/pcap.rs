//! `PcapTrace` and `--trace-pcap` write captures that tshark (Wireshark's dissectors, a
//! reader no one here wrote) opens and dissects as the upload that was made: the request
//! method, its framing, every chunk, the body byte for byte, the trailers and the response;
//! over TLS from the capture alone, with no key file. tshark also checks the made-up TCP
//! layer: checksums verified, and none of its sequence-analysis warnings.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chunkwire::pcap::PcapTrace;

mod support;

#[global_allocator]
static GLOBAL: support::CountingAllocator = support::CountingAllocator;
use chunkwire::sink::Sink;
use chunkwire::{Client, ServerTls, TlsConfig};

/// A scratch file for this test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        Scratch(std::env::temp_dir().join(format!("chunkwire-pcap-{}-{name}", std::process::id())))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// tshark's `-T fields` output for `capture`, one row a packet that `filter` keeps, with
/// `port` decoded as `protocol` and checksums verified.
fn tshark(
    capture: &Path,
    port: u16,
    protocol: &str,
    filter: &str,
    fields: &[&str],
) -> Vec<Vec<String>> {
    tshark_ports(capture, &[(port, protocol)], filter, fields)
}

/// [`tshark`] with several ports decoded.
fn tshark_ports(
    capture: &Path,
    ports: &[(u16, &str)],
    filter: &str,
    fields: &[&str],
) -> Vec<Vec<String>> {
    let mut command = Command::new("tshark");
    command.arg("-r").arg(capture).args([
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "ip.check_checksum:TRUE",
    ]);
    for (port, protocol) in ports {
        command.args(["-d", &format!("tcp.port=={port},{protocol}")]);
    }
    command.args(["-Y", filter, "-T", "fields", "-E", "separator=\t"]);
    for field in fields {
        command.args(["-e", field]);
    }
    let output = command.output().unwrap_or_else(|e| {
        panic!("cannot run tshark ({e}): .ci/run installs Debian's tshark, which these tests need")
    });
    assert!(
        output.status.success(),
        "tshark failed on {}: {}",
        capture.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect()
}

/// What tshark made of the one request and the one response in a capture.
#[derive(Debug)]
struct Dissected {
    method: String,
    transfer_encoding: String,
    content_length: String,
    chunk_sizes: Vec<u64>,
    body: String,
    trailers: String,
    status: String,
}

fn dissect(capture: &Path, port: u16, protocol: &str) -> Dissected {
    let requests = tshark(
        capture,
        port,
        protocol,
        "http.request",
        &[
            "http.request.method",
            "http.transfer_encoding",
            "http.content_length_header",
            "http.chunk_size",
            "data.data",
            "http.chunked_trailer_part",
        ],
    );
    assert_eq!(
        requests.len(),
        1,
        "one request in the capture: {requests:?}"
    );
    let request = &requests[0];
    let responses = tshark(
        capture,
        port,
        protocol,
        "http.response",
        &["http.response.code"],
    );
    assert_eq!(
        responses.len(),
        1,
        "one response in the capture: {responses:?}"
    );
    Dissected {
        method: request[0].clone(),
        transfer_encoding: request[1].clone(),
        content_length: request[2].clone(),
        chunk_sizes: request[3]
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect(),
        body: request[4].replace(':', ""),
        trailers: request[5].clone(),
        status: responses[0][0].clone(),
    }
}

/// The TCP layer is sound as tshark sees it: every checksum it checks is good, and its
/// sequence analysis finds nothing wrong (lost, retransmitted, out-of-order or
/// unacknowledged segments, a full window).
fn assert_tcp_is_sound(capture: &Path, port: u16, protocol: &str) {
    let bad = tshark(
        capture,
        port,
        protocol,
        "tcp.checksum.status != 1 || ip.checksum.status == 0 || tcp.analysis.flags",
        &["frame.number", "_ws.expert.message"],
    );
    assert!(
        bad.is_empty(),
        "tshark finds fault with these packets: {bad:?}"
    );
    let streams = tshark(
        capture,
        port,
        protocol,
        "tcp.flags.syn == 1 && tcp.flags.ack == 0",
        &["tcp.stream"],
    );
    assert!(!streams.is_empty(), "no TCP handshake in the capture");
}

fn comments(capture: &Path, port: u16, protocol: &str) -> Vec<String> {
    tshark(capture, port, protocol, "frame.comment", &["frame.comment"])
        .into_iter()
        .map(|row| row.join(" "))
        .collect()
}

#[test]
fn a_chunked_upload_is_dissected_chunk_by_chunk() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let port = sink.addr().port();
    let capture = Scratch::new("chunked.pcapng");
    let pcap = PcapTrace::create(&capture.0).unwrap();
    let data = pattern(10_500);
    let client = Client::builder().chunk_size(1000).build().unwrap();
    let mut response = client
        .upload(&sink.url("/chunked"))
        .trailer("X-Sum", "7")
        .trace(pcap.clone())
        .send(&data[..])
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().unwrap();
    drop(response);
    let report = sink.next_report(Duration::from_secs(10)).unwrap();
    pcap.finish().unwrap();

    let seen = dissect(&capture.0, port, "http");
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.transfer_encoding, "chunked");
    let mut sizes = vec![1000; 10];
    sizes.extend([500, 0]);
    assert_eq!(seen.chunk_sizes, sizes);
    assert_eq!(report.chunks + 1, seen.chunk_sizes.len() as u64);
    assert_eq!(seen.body, hex(&data), "the reassembled body is the upload");
    assert_eq!(seen.trailers, "X-Sum: 7\\r\\n");
    assert_eq!(seen.status, "200");
    assert_tcp_is_sound(&capture.0, port, "http");

    let comments = comments(&capture.0, port, "http");
    for part in [
        "request line",
        "header",
        "end of head",
        "chunk size (1000)",
        "chunk size (500)",
        "chunk data",
        "chunk end",
        "last chunk",
        "trailer",
        "end of body",
        "status line",
        "body",
    ] {
        assert!(
            comments.iter().any(|c| c == part),
            "no packet is labelled {part:?}: {comments:?}"
        );
    }
}

#[test]
fn a_content_length_upload_over_ipv6_is_dissected() {
    let (sink, ipv6) = match Sink::bind("[::1]:0") {
        Ok(sink) => (sink, true),
        Err(e) => {
            eprintln!("NO IPv6 LOOPBACK ({e}): this capture is made over IPv4");
            (Sink::bind("127.0.0.1:0").unwrap(), false)
        }
    };
    let sink = sink.spawn().unwrap();
    let port = sink.addr().port();
    let capture = Scratch::new("length.pcapng");
    let pcap = PcapTrace::create(&capture.0).unwrap();
    // Larger than a packet: the body is reassembled from several.
    let data = pattern(200_000);
    let client = Client::builder().build().unwrap();
    let mut response = client
        .upload(&sink.url("/length"))
        .content_length(data.len() as u64)
        .trace(pcap.clone())
        .send(&data[..])
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().unwrap();
    drop(response);
    pcap.finish().unwrap();

    let seen = dissect(&capture.0, port, "http");
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.transfer_encoding, "");
    assert_eq!(seen.content_length, data.len().to_string());
    assert!(seen.chunk_sizes.is_empty());
    assert_eq!(seen.body, hex(&data));
    assert_eq!(seen.status, "200");
    assert_tcp_is_sound(&capture.0, port, "http");
    if ipv6 {
        let addresses = tshark(
            &capture.0,
            port,
            "http",
            "http.request",
            &["ipv6.src", "ipv6.dst"],
        );
        assert_eq!(addresses, [["::1", "::1"]]);
    }
}

fn trusting(tls: &ServerTls) -> TlsConfig {
    TlsConfig::builder()
        .add_ca_pem(tls.ca_pem().as_bytes())
        .unwrap()
        .build()
        .unwrap()
}

#[test]
fn a_tls_upload_decrypts_from_the_capture_alone() {
    let tls = ServerTls::self_signed().unwrap();
    let sink = Sink::bind("127.0.0.1:0")
        .unwrap()
        .with_tls(tls.clone())
        .spawn()
        .unwrap();
    let port = sink.addr().port();
    let capture = Scratch::new("tls.pcapng");
    let pcap = PcapTrace::create(&capture.0).unwrap();
    // Chunks larger than a TLS record, and a body larger than a packet.
    let data = pattern(100_000);
    let client = Client::builder()
        .chunk_size(40_000)
        .tls_config(trusting(&tls))
        .build()
        .unwrap();
    let mut response = client
        .upload(&sink.url("/tls"))
        .trailer("X-Sum", "7")
        .trace(pcap.clone())
        .send(&data[..])
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().unwrap();
    drop(response);
    pcap.finish().unwrap();

    // No key log file anywhere: the secrets are in the capture.
    let seen = dissect(&capture.0, port, "tls");
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.transfer_encoding, "chunked");
    assert_eq!(seen.chunk_sizes, [40_000, 40_000, 20_000, 0]);
    assert_eq!(seen.body, hex(&data));
    assert_eq!(seen.trailers, "X-Sum: 7\\r\\n");
    assert_eq!(seen.status, "200");
    assert_tcp_is_sound(&capture.0, port, "tls");
    let comments = comments(&capture.0, port, "tls");
    assert!(
        comments
            .iter()
            .any(|c| c.contains("plaintext handed over: request line")),
        "{comments:?}"
    );

    // The same bytes without the secrets block are records tshark cannot open: the block
    // is what decrypts them.
    let stripped = Scratch::new("tls-stripped.pcapng");
    let status = Command::new("editcap")
        .arg("--discard-all-secrets")
        .arg(&capture.0)
        .arg(&stripped.0)
        .status();
    if let Ok(status) = status {
        assert!(status.success());
        let requests = tshark(
            &stripped.0,
            port,
            "tls",
            "http.request",
            &["http.request.method"],
        );
        assert!(
            requests.is_empty(),
            "decrypted without the secrets: {requests:?}"
        );
    }
}

#[test]
fn uploads_on_a_kept_connection_are_one_stream_in_one_capture() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let port = sink.addr().port();
    let capture = Scratch::new("kept.pcapng");
    let pcap = PcapTrace::create(&capture.0).unwrap();
    let client = Client::builder().chunk_size(100).build().unwrap();
    for (path, len) in [("/first", 250), ("/second", 30)] {
        let mut response = client
            .upload(&sink.url(path))
            .trace(pcap.clone())
            .send(&pattern(len)[..])
            .unwrap();
        response.text().unwrap();
    }
    pcap.finish().unwrap();
    let requests = tshark(
        &capture.0,
        port,
        "http",
        "http.request",
        &["tcp.stream", "http.request.uri", "http.chunk_size"],
    );
    assert_eq!(
        requests,
        [["0", "/first", "100,100,50,0"], ["0", "/second", "30,0"]]
    );
    assert_tcp_is_sound(&capture.0, port, "http");
}

fn chunkwire(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chunkwire"));
    command.args(args).env_remove("SSLKEYLOGFILE");
    command
}

#[test]
fn the_cli_writes_a_capture_of_uploads_at_once_over_tls_beside_a_text_trace() {
    let tls = ServerTls::self_signed().unwrap();
    let sink = Sink::bind("127.0.0.1:0")
        .unwrap()
        .with_tls(tls.clone())
        .spawn()
        .unwrap();
    let port = sink.addr().port();
    let ca = Scratch::new("cli-ca.pem");
    std::fs::write(&ca.0, tls.ca_pem()).unwrap();
    let files = [Scratch::new("cli-a"), Scratch::new("cli-b")];
    std::fs::write(&files[0].0, pattern(5000)).unwrap();
    std::fs::write(&files[1].0, pattern(7000)).unwrap();
    let capture = Scratch::new("cli.pcapng");
    let text = Scratch::new("cli.trace");
    let output = chunkwire(&["upload", "-s", "-Z", "--chunk-size", "2000", "--cacert"])
        .arg(&ca.0)
        .arg("--trace-pcap")
        .arg(&capture.0)
        .args(["--trace-ascii", "-"])
        .arg(sink.url("/"))
        .args([&files[0].0, &files[1].0])
        .output()
        .unwrap();
    // -Z refuses text traces (their lines would interleave) but not the capture.
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = chunkwire(&["upload", "-s", "-Z", "--chunk-size", "2000", "--cacert"])
        .arg(&ca.0)
        .arg("--trace-pcap")
        .arg(&capture.0)
        .arg(sink.url("/"))
        .args([&files[0].0, &files[1].0])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut requests = tshark(
        &capture.0,
        port,
        "tls",
        "http.request",
        &["http.request.method", "http.chunk_size", "data.len"],
    );
    requests.sort();
    assert_eq!(
        requests,
        [
            ["PUT", "2000,2000,1000,0", "5000"],
            ["PUT", "2000,2000,2000,1000,0", "7000"]
        ]
    );
    let responses = tshark(
        &capture.0,
        port,
        "tls",
        "http.response",
        &["http.response.code"],
    );
    assert_eq!(responses, [["200"], ["200"]]);
    assert_tcp_is_sound(&capture.0, port, "tls");

    // One after the other, with a text trace beside the capture.
    let output = chunkwire(&["upload", "-s", "--chunk-size", "2000", "--cacert"])
        .arg(&ca.0)
        .arg("--trace-pcap")
        .arg(&capture.0)
        .arg("--trace-ascii")
        .arg(&text.0)
        .arg(sink.url("/"))
        .args([&files[0].0, &files[1].0])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let requests = tshark(
        &capture.0,
        port,
        "tls",
        "http.request",
        &["tcp.stream", "data.len"],
    );
    assert_eq!(requests, [["0", "5000"], ["0", "7000"]]);
    let text = std::fs::read_to_string(&text.0).unwrap();
    assert!(text.contains("chunk size (1000)"), "{text}");
}

#[test]
fn the_cli_refuses_a_capture_file_it_cannot_create_or_that_is_the_upload() {
    let file = Scratch::new("refused-src");
    std::fs::write(&file.0, b"abc").unwrap();
    let output = chunkwire(&["upload", "--trace-pcap"])
        .arg(&file.0)
        .arg("http://127.0.0.1:9/")
        .arg(&file.0)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--trace-pcap") && stderr.contains("to be uploaded"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&file.0).unwrap(), b"abc");

    let output = chunkwire(&["upload", "--trace-pcap", "/nonexistent-dir/cap.pcapng"])
        .arg("http://127.0.0.1:9/")
        .arg(&file.0)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot create --trace-pcap file /nonexistent-dir/cap.pcapng"),
        "{stderr}"
    );
}

#[test]
fn an_untraced_upload_on_a_kept_tls_connection_stays_out_of_the_capture() {
    let tls = ServerTls::self_signed().unwrap();
    let sink = Sink::bind("127.0.0.1:0")
        .unwrap()
        .with_tls(tls.clone())
        .spawn()
        .unwrap();
    let port = sink.addr().port();
    let capture = Scratch::new("kept-tls.pcapng");
    let pcap = PcapTrace::create(&capture.0).unwrap();
    let client = Client::builder()
        .chunk_size(100)
        .tls_config(trusting(&tls))
        .build()
        .unwrap();
    let mut sent_in_capture = Vec::new();
    for (path, traced) in [("/first", true), ("/untraced", false)] {
        let mut upload = client.upload(&sink.url(path));
        if traced {
            upload = upload.trace(pcap.clone());
        }
        let mut response = upload.send(&pattern(150)[..]).unwrap();
        response.text().unwrap();
        drop(response);
        // What the capture holds of our side so far, once the upload is over.
        pcap.flush().unwrap();
        let total: u64 = tshark(&capture.0, port, "tls", "tcp.srcport != 0", &["tcp.len"])
            .iter()
            .map(|row| row[0].parse::<u64>().unwrap())
            .sum();
        sent_in_capture.push(total);
    }
    pcap.finish().unwrap();
    let requests = tshark(
        &capture.0,
        port,
        "tls",
        "http.request",
        &["tcp.stream", "http.request.uri", "http.chunk_size"],
    );
    assert_eq!(requests, [["0", "/first", "100,50,0"]]);
    assert!(sent_in_capture[0] > 0);
    assert_eq!(
        sent_in_capture[0], sent_in_capture[1],
        "records of the untraced upload went into the capture"
    );
    assert_tcp_is_sound(&capture.0, port, "tls");
}

/// Zero bytes, `left` of them, noting this thread's allocations at the second read and at
/// the last.
struct Counted {
    left: usize,
    reads: usize,
    at_second_read: Option<u64>,
    at_last_read: Option<u64>,
}

impl std::io::Read for Counted {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        self.reads += 1;
        if self.reads == 2 {
            self.at_second_read = Some(support::counters().0);
        }
        let n = out.len().min(self.left);
        out[..n].fill(0x5A);
        self.left -= n;
        if self.left == 0 && self.at_last_read.is_none() {
            self.at_last_read = Some(support::counters().0);
        }
        Ok(n)
    }
}

#[test]
fn capturing_a_plain_upload_allocates_nothing_per_chunk() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let (chunk, chunks) = (16 * 1024, 500);
    let mut source = Counted {
        left: chunk * chunks,
        reads: 0,
        at_second_read: None,
        at_last_read: None,
    };
    let pcap = PcapTrace::new(std::io::sink()).unwrap();
    let client = Client::builder().chunk_size(chunk).build().unwrap();
    let mut response = client
        .upload(&sink.url("/counted"))
        .trace(pcap.clone())
        .send(&mut source)
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().unwrap();
    pcap.finish().unwrap();
    let allocations = source.at_last_read.unwrap() - source.at_second_read.unwrap();
    assert_eq!(
        allocations, 0,
        "allocations while {chunks} chunks were captured"
    );
}

#[test]
fn a_redirect_answered_before_the_body_is_two_streams_in_one_capture() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let target = sink.url("/moved");
    // Answers the head at once, as a server that refuses `Expect: 100-continue` does.
    let (url, first) = support::serve_once(move |mut stream| {
        support::read_head(&mut stream);
        let reply = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        std::io::Write::write_all(&mut stream, reply.as_bytes()).unwrap();
    });
    let first_port: u16 = url
        .trim_end_matches("/up")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let capture = Scratch::new("redirect.pcapng");
    let pcap = PcapTrace::create(&capture.0).unwrap();
    let data = pattern(3000);
    let client = Client::builder().chunk_size(1000).build().unwrap();
    let mut response = client
        .upload(&url)
        .expect_continue(Duration::from_secs(5))
        .max_redirects(1)
        .trace(pcap.clone())
        .send_seekable(std::io::Cursor::new(data.clone()))
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().unwrap();
    drop(response);
    first.join().unwrap();
    pcap.finish().unwrap();

    let ports = [(first_port, "http"), (sink.addr().port(), "http")];
    let requests = tshark_ports(
        &capture.0,
        &ports,
        "http.request",
        &[
            "tcp.stream",
            "http.request.uri",
            "http.request.line",
            "http.chunk_size",
            "data.len",
        ],
    );
    // The first request is a head alone: the server answered before the body, which then
    // went to the second. tshark, rightly, sees no whole request in the first stream.
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0][..2], ["1", "/moved"]);
    assert!(
        requests[0][2].contains("Expect: 100-continue"),
        "{requests:?}"
    );
    assert_eq!(requests[0][3..], ["1000,1000,1000,0", "3000"]);
    let first_sent = tshark_ports(
        &capture.0,
        &ports,
        &format!("tcp.stream == 0 && tcp.dstport == {first_port} && tcp.len > 0"),
        &["frame.comment"],
    );
    let first_sent: Vec<&str> = first_sent.iter().map(|row| row[0].as_str()).collect();
    assert_eq!(
        first_sent,
        [
            "request line",
            "header",
            "header",
            "header",
            "header",
            "end of head"
        ],
        "the head and nothing more went to the first server"
    );
    let responses = tshark_ports(
        &capture.0,
        &ports,
        "http.response",
        &["tcp.stream", "http.response.code"],
    );
    assert_eq!(responses, [["0", "307"], ["1", "100"], ["1", "200"]]);
    assert_tcp_is_sound(&capture.0, first_port, "http");
}

#[test]
fn a_tls12_upload_decrypts_from_the_capture_alone_too() {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let tls = ServerTls::self_signed().unwrap();
    let sink = Sink::bind("127.0.0.1:0")
        .unwrap()
        .with_tls(tls.clone())
        .spawn()
        .unwrap();
    let port = sink.addr().port();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(tls.ca_pem().as_bytes()).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = Client::builder()
        .chunk_size(5000)
        .tls_config(TlsConfig::from_rustls(std::sync::Arc::new(config)))
        .build()
        .unwrap();
    let capture = Scratch::new("tls12.pcapng");
    let pcap = PcapTrace::create(&capture.0).unwrap();
    let data = pattern(12_000);
    let mut response = client
        .upload(&sink.url("/tls12"))
        .trace(pcap.clone())
        .send(&data[..])
        .unwrap();
    assert_eq!(response.tls().unwrap().version, "TLSv1.2");
    response.text().unwrap();
    drop(response);
    pcap.finish().unwrap();
    let seen = dissect(&capture.0, port, "tls");
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.chunk_sizes, [5000, 5000, 2000, 0]);
    assert_eq!(seen.body, hex(&data));
    assert_eq!(seen.status, "200");
    assert_tcp_is_sound(&capture.0, port, "tls");
}

#[test]
fn the_cli_writes_the_capture_to_standard_output_when_the_body_goes_to_a_file() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let port = sink.addr().port();
    let file = Scratch::new("stdout-src");
    std::fs::write(&file.0, pattern(2500)).unwrap();
    let body = Scratch::new("stdout-body.json");
    let output = chunkwire(&["upload", "-s", "--chunk-size", "1000", "--trace-pcap", "-"])
        .arg(sink.url("/piped"))
        .arg(&file.0)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--trace-pcap - needs -o FILE"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = chunkwire(&["upload", "-s", "--chunk-size", "1000", "--trace-pcap", "-"])
        .arg("-o")
        .arg(&body.0)
        .arg(sink.url("/piped"))
        .arg(&file.0)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let capture = Scratch::new("stdout.pcapng");
    std::fs::write(&capture.0, &output.stdout).unwrap();
    let seen = dissect(&capture.0, port, "http");
    assert_eq!(seen.chunk_sizes, [1000, 1000, 500, 0]);
    assert_eq!(seen.body, hex(&pattern(2500)));
    assert!(
        std::fs::read_to_string(&body.0)
            .unwrap()
            .contains("\"bytes\":2500")
    );
}
