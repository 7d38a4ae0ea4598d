//! The `chunkwire` command end to end: what reaches the server, where the response goes,
//! the curl-style exit codes and the one-line errors, against the loopback sink and
//! purpose-written servers.
#![cfg(feature = "cli")]

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use chunkwire::sink::{Framing, Sink};

/// How long a test waits for the sink's report of an upload that should have happened.
const REPORT_WAIT: Duration = Duration::from_secs(5);

fn chunkwire(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chunkwire"));
    command.args(args).stdin(Stdio::null());
    // The servers are on loopback: a proxy of the machine's environment must not stand in
    // between (tests/cli_proxy.rs tests the variables).
    for name in PROXY_VARIABLES {
        command.env_remove(name);
    }
    command
}

const PROXY_VARIABLES: [&str; 8] = [
    "http_proxy",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "REQUEST_METHOD",
];

/// A temporary file, named after the process and the test, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(test: &str, name: &str, contents: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "chunkwire-cli-{}-{test}-{name}",
            std::process::id()
        ));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Bytes that differ from one chunk to the next, so a misplaced chunk changes the CRC.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 241) as u8).collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether `seen` holds a whole request: the head, then a chunked body up to the empty line
/// after the last chunk and its trailers, or a Content-Length body. Good for the small ASCII
/// bodies these tests send.
fn request_complete(seen: &[u8]) -> bool {
    let Some(end) = find(seen, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
    let body = &seen[end + 4..];
    if head.contains("\r\ntransfer-encoding: chunked") {
        let last_chunk = if body.starts_with(b"0\r\n") {
            Some(0)
        } else {
            find(body, b"\r\n0\r\n").map(|i| i + 2)
        };
        last_chunk.is_some_and(|at| body[at..].ends_with(b"\r\n\r\n"))
    } else if let Some(at) = head.find("\r\ncontent-length:") {
        let value = head[at + 17..].lines().next().unwrap_or("").trim();
        body.len() as u64 >= value.parse::<u64>().unwrap()
    } else {
        true
    }
}

/// Reads one whole request (see `request_complete`), or what came before the client
/// closed or five seconds passed.
fn read_request(stream: &mut TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !request_complete(&seen) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    seen
}

/// Serves one connection: reads the whole request, answers `reply`, closes. Returns the URL
/// `/x` on it and the thread, which gives back the request bytes it read.
fn canned(reply: &'static [u8]) -> (String, thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/x", listener.local_addr().unwrap());
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let request = read_request(&mut stream);
        let _ = stream.write_all(reply);
        request
    });
    (url, server)
}

const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\nX-Why: gone\r\n\r\nnope";

#[test]
fn upload_a_file_chunked_and_print_the_response() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let data = pattern(300_000);
    let file = TempFile::new("chunked", "body", &data);
    let output = chunkwire(&[
        "upload",
        "--chunk-size",
        "16k",
        &sink.url("/f"),
        file.path(),
    ])
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = sink.next_report(REPORT_WAIT).unwrap();
    assert_eq!(report.method, "PUT", "PUT is the default method");
    assert_eq!(report.target, "/f");
    assert_eq!(report.framing, Framing::Chunked);
    assert_eq!(report.bytes, data.len() as u64);
    assert_eq!(report.crc32, crc32fast::hash(&data));
    // A regular file fills every chunk but the last.
    assert_eq!(report.chunks, data.len().div_ceil(16 * 1024) as u64);
    assert_eq!(report.largest_chunk, 16 * 1024);
    // The response body, exactly as the sink sent it, and nothing else.
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("{}\n", report.to_json())
    );
}

#[test]
fn standard_input_is_uploaded_chunked() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let data = pattern(300_000);
    let mut child = chunkwire(&["upload", "--chunk-size", "16k", &sink.url("/stdin"), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = {
        let data = data.clone();
        thread::spawn(move || stdin.write_all(&data))
    };
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    writer.join().unwrap().unwrap();
    let report = sink.next_report(REPORT_WAIT).unwrap();
    assert_eq!(report.framing, Framing::Chunked);
    assert_eq!(report.bytes, data.len() as u64);
    assert_eq!(report.crc32, crc32fast::hash(&data));
    // A pipe may hand over less than a chunk at a time, and each read is one chunk, so
    // only the bounds are fixed here; the exact count is checked with a file on stdin below.
    assert!(
        report.chunks >= data.len().div_ceil(16 * 1024) as u64,
        "{report:?}"
    );
    assert!(report.largest_chunk <= 16 * 1024, "{report:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("{}\n", report.to_json())
    );

    // Standard input redirected from a file (`- < file`): every read is a full chunk.
    let file = TempFile::new("stdin", "body", &data);
    let output = chunkwire(&["upload", "--chunk-size", "16k", &sink.url("/stdin"), "-"])
        .stdin(std::fs::File::open(&file.0).unwrap())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = sink.next_report(REPORT_WAIT).unwrap();
    assert_eq!(report.framing, Framing::Chunked);
    assert_eq!(report.bytes, data.len() as u64);
    assert_eq!(report.crc32, crc32fast::hash(&data));
    assert_eq!(report.chunks, data.len().div_ceil(16 * 1024) as u64);
}

#[test]
fn content_length_needs_a_known_size() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let data = pattern(70_000);
    let file = TempFile::new("content-length", "body", &data);
    let output = chunkwire(&["upload", "--content-length", &sink.url("/cl"), file.path()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = sink.next_report(REPORT_WAIT).unwrap();
    assert_eq!(report.framing, Framing::ContentLength);
    assert_eq!(report.bytes, data.len() as u64);
    assert_eq!(report.crc32, crc32fast::hash(&data));
    assert_eq!(report.chunks, 0);

    // Standard input has no size to announce: refused before anything is sent.
    let mut child = chunkwire(&["upload", "--content-length", &sink.url("/cl"), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The child may exit before reading: a broken pipe here is fine.
    let _ = child.stdin.take().unwrap().write_all(b"some bytes");
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.starts_with("chunkwire: "), "{message}");
    assert!(message.contains("content-length"), "{message}");
    assert!(
        sink.next_report(Duration::from_millis(200)).is_none(),
        "nothing reached the sink"
    );
}

#[test]
fn method_header_and_trailer() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let file = TempFile::new("method", "body", b"hello trailers");
    let args = |url: &str| {
        chunkwire(&[
            "upload",
            "-X",
            "POST",
            "-H",
            "X-A: b",
            "--trailer",
            "X-T: 1",
            url,
            file.path(),
        ])
        .output()
        .unwrap()
    };

    let output = args(&sink.url("/m"));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = sink.next_report(REPORT_WAIT).unwrap();
    assert_eq!(report.method, "POST");
    assert_eq!(report.framing, Framing::Chunked);
    assert_eq!(report.bytes, 14);
    assert!(
        report
            .trailers
            .iter()
            .any(|(name, value)| name.eq_ignore_ascii_case("X-T") && value == "1"),
        "{:?}",
        report.trailers
    );

    // The sink does not report headers: look at the request itself.
    let (url, server) = canned(b"HTTP/1.1 204 No Content\r\n\r\n");
    let output = args(&url);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let request = String::from_utf8(server.join().unwrap()).unwrap();
    assert!(request.starts_with("POST /x HTTP/1.1\r\n"), "{request}");
    let (head, body) = request.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("\r\nx-a: b\r\n") || head.ends_with("\r\nx-a: b"),
        "{head}"
    );
    assert!(head.contains("\r\ntrailer: x-t"), "{head}");
    assert!(
        body.to_ascii_lowercase()
            .ends_with("\r\n0\r\nx-t: 1\r\n\r\n"),
        "{body:?}"
    );
}

#[test]
fn output_goes_to_the_file() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let data = pattern(40_000);
    let file = TempFile::new("output", "body", &data);
    // Longer than the response, so a file that is not truncated shows.
    let out = TempFile::new("output", "out", &[b'#'; 4096]);
    let output = chunkwire(&["upload", "-o", out.path(), &sink.url("/o"), file.path()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(output.stdout.is_empty(), "the body went to -o");
    let report = sink.next_report(REPORT_WAIT).unwrap();
    assert_eq!(report.bytes, data.len() as u64);
    assert_eq!(
        std::fs::read_to_string(&out.0).unwrap(),
        format!("{}\n", report.to_json())
    );
}

#[test]
fn fail_turns_an_http_error_into_exit_22() {
    let file = TempFile::new("fail", "body", b"x");
    let (url, server) = canned(NOT_FOUND);
    let output = chunkwire(&["upload", "-f", &url, file.path()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(22), "{}", stderr(&output));
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.starts_with("chunkwire: "), "{message}");
    assert!(message.contains("404 Not Found"), "{message}");
    assert!(output.stdout.is_empty(), "-f writes no body");
    assert!(request_complete(&server.join().unwrap()));

    // Without -f the status is the server's business: exit 0, the body on stdout.
    let (url, _server) = canned(NOT_FOUND);
    let output = chunkwire(&["upload", &url, file.path()]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(output.stdout, b"nope");
    assert!(output.stderr.is_empty(), "{}", stderr(&output));
}

#[test]
fn verbose_shows_the_response_head_on_stderr() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let file = TempFile::new("verbose", "body", b"look at the head");
    let output = chunkwire(&["upload", "-v", &sink.url("/v"), file.path()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    sink.next_report(REPORT_WAIT).unwrap();
    let verbose = stderr(&output);
    let lines: Vec<&str> = verbose.lines().collect();
    assert_eq!(lines.first(), Some(&"< HTTP/1.1 200 OK"), "{verbose}");
    let lower: Vec<String> = lines.iter().map(|l| l.to_ascii_lowercase()).collect();
    assert!(
        lower.contains(&"< content-type: application/json".to_owned()),
        "{verbose}"
    );
    assert!(
        lower.contains(&format!("< content-length: {}", output.stdout.len())),
        "{verbose}"
    );
    // The head goes to stderr only; stdout is the body.
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("{\"method\":\"PUT\""), "{stdout}");

    // Other statuses too, with their own headers.
    let (url, _server) = canned(NOT_FOUND);
    let output = chunkwire(&["upload", "-v", &url, file.path()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let verbose = stderr(&output);
    assert!(verbose.contains("< HTTP/1.1 404 Not Found\n"), "{verbose}");
    assert!(
        verbose.to_ascii_lowercase().contains("< x-why: gone\n"),
        "{verbose}"
    );
    assert_eq!(output.stdout, b"nope");
}

#[test]
fn connection_refused_is_exit_7_in_one_line() {
    let file = TempFile::new("refused", "body", b"payload");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = chunkwire(&["upload", &format!("http://127.0.0.1:{port}/"), file.path()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.starts_with("chunkwire: connect failed"),
        "{message}"
    );
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(message.contains("body bytes sent"), "{message}");
    assert!(output.stdout.is_empty());
}

#[test]
fn bad_url_and_bad_header_are_refused_before_connecting() {
    let file = TempFile::new("usage", "body", b"payload");
    let output = chunkwire(&["upload", "http://h:99999/", file.path()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains("invalid URL"), "{message}");

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/h", listener.local_addr().unwrap());
    let output = chunkwire(&["upload", "-H", "X-A: a\rb", &url, file.path()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message:?}");
    assert!(
        message.contains("invalid value for header \"X-A\""),
        "{message:?}"
    );
    // The kernel queues a connection even when nobody accepts it: none is there.
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the client connected: {other:?}"),
    }
}

#[test]
fn a_bad_command_line_is_exit_2_and_help_is_exit_0() {
    for args in [
        &["upload", "http://127.0.0.1:1/"][..],
        &["upload", "--no-such-option", "http://127.0.0.1:1/", "f"],
        &["upload", "-s", "-#", "http://127.0.0.1:1/", "f"],
        &["sink", "--listen"],
    ] {
        let output = chunkwire(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let message = stderr(&output);
        assert!(message.starts_with("chunkwire: "), "{args:?}: {message}");
        assert!(message.contains("--help'"), "{args:?}: {message}");
        assert!(output.stdout.is_empty());
    }
    let output = chunkwire(&["upload", "--help"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for option in [
        "--request <METHOD>",
        "--content-length",
        "--trace-ascii <FILE>",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
    let output = chunkwire(&["--version"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("chunkwire {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn max_time_ends_a_stalled_exchange_with_exit_28() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/slow", listener.local_addr().unwrap());
    let (done, wait) = mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let request = read_request(&mut stream);
        // Never answer; hold the connection open until the test is done.
        let _ = wait.recv_timeout(Duration::from_secs(10));
        request
    });
    let file = TempFile::new("max-time", "body", b"x");
    let started = Instant::now();
    let output = chunkwire(&["upload", "--max-time", "0.5", &url, file.path()])
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    done.send(()).unwrap();
    assert_eq!(output.status.code(), Some(28), "{}", stderr(&output));
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains("maximum time"), "{message}");
    assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert!(request_complete(&server.join().unwrap()));
}

#[test]
fn the_demo_uploads_intact() {
    let output = chunkwire(&["demo", "--size-mib", "8"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.lines().any(|l| l.starts_with("intact:       yes")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l == "body bytes:   8388608 sent, 8388608 received by the sink"),
        "{stdout}"
    );
}

#[test]
fn several_files_go_one_after_another_over_one_connection() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let first = TempFile::new("several", "a.txt", b"first file");
    let second = TempFile::new("several", "b.txt", b"second");
    let output = chunkwire(&[
        "upload",
        "--trace-ascii",
        "-",
        "-o",
        "/dev/null",
        &sink.url("/dir/"),
        first.path(),
        second.path(),
    ])
    .output()
    .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let reports: Vec<_> = (0..2)
        .map(|_| sink.next_report(REPORT_WAIT).unwrap())
        .collect();
    let name = |f: &TempFile| f.0.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(reports[0].target, format!("/dir/{}", name(&first)));
    assert_eq!(reports[1].target, format!("/dir/{}", name(&second)));
    assert_eq!((reports[0].bytes, reports[1].bytes), (10, 6));
    let trace = String::from_utf8(output.stdout).unwrap();
    assert_eq!(trace.matches("* connected to").count(), 1, "{trace}");
    assert_eq!(
        trace.matches("* reusing the kept connection").count(),
        1,
        "{trace}"
    );
}
