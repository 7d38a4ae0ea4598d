//! The `chunkwire` command end to end: exit codes, the one-line errors, and where the
//! response goes, against the loopback sink and purpose-written servers.
#![cfg(feature = "cli")]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use chunkwire::sink::{Framing, Sink};

fn chunkwire(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chunkwire"));
    command.args(args);
    command
}

/// A temporary file that is removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("chunkwire-cli-{}-{name}", std::process::id()));
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

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 241) as u8).collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Serves one connection: reads the request head, answers `reply`, closes.
fn canned(reply: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/x", listener.local_addr().unwrap());
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.windows(5).any(|w| w == b"0\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        let _ = stream.write_all(reply);
    });
    url
}

#[test]
fn upload_a_file_chunked_and_print_the_response() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let data = pattern(300_000);
    let file = TempFile::new("file", &data);
    let output = chunkwire(&[
        "upload",
        "--chunk-size",
        "16k",
        &sink.url("/f"),
        file.path(),
    ])
    .output()
    .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let report = sink.next_report(Duration::from_secs(5)).unwrap();
    assert_eq!(report.bytes, data.len() as u64);
    assert_eq!(report.crc32, crc32fast::hash(&data));
    assert_eq!(report.framing, Framing::Chunked);
    assert_eq!(report.chunks, data.len().div_ceil(16 * 1024) as u64);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("\"bytes\":300000"),
        "the sink's JSON is on stdout: {stdout}"
    );
}

#[test]
fn standard_input_is_uploaded_and_content_length_needs_a_known_size() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let data = pattern(100_000);
    let mut child = chunkwire(&["upload", "-X", "POST", &sink.url("/stdin"), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let report = sink.next_report(Duration::from_secs(5)).unwrap();
    assert_eq!(
        (report.method.as_str(), report.bytes),
        ("POST", data.len() as u64)
    );
    assert_eq!(report.crc32, crc32fast::hash(&data));

    let output = chunkwire(&["upload", "--content-length", &sink.url("/x"), "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains("--content-length"), "{message}");
}

#[test]
fn content_length_with_a_file_and_output_to_a_file() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let data = pattern(70_000);
    let file = TempFile::new("cl", &data);
    let out = TempFile::new("out", b"");
    let output = chunkwire(&[
        "upload",
        "--content-length",
        "-o",
        out.path(),
        &sink.url("/cl"),
        file.path(),
    ])
    .output()
    .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(output.stdout.is_empty(), "the body went to -o");
    let report = sink.next_report(Duration::from_secs(5)).unwrap();
    assert_eq!(report.framing, Framing::ContentLength);
    assert_eq!(report.bytes, data.len() as u64);
    let written = std::fs::read_to_string(&out.0).unwrap();
    assert!(
        written.contains("\"framing\":\"content-length\""),
        "{written}"
    );
}

#[test]
fn fail_turns_an_http_error_into_exit_22_and_verbose_shows_the_head() {
    let file = TempFile::new("fail", b"x");
    let url = canned(b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\nX-Why: gone\r\n\r\nnope");
    let output = chunkwire(&["upload", "-f", &url, file.path()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(22));
    assert!(
        stderr(&output).contains("404 Not Found"),
        "{}",
        stderr(&output)
    );

    let url = canned(b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\nX-Why: gone\r\n\r\nnope");
    let output = chunkwire(&["upload", "-v", &url, file.path()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(output.stdout, b"nope");
    let verbose = stderr(&output);
    assert!(verbose.contains("< HTTP/1.1 404 Not Found"), "{verbose}");
    assert!(verbose.contains("< x-why: gone"), "{verbose}");
}

#[test]
fn errors_are_one_line_naming_the_stage_and_curl_exit_codes() {
    let file = TempFile::new("err", b"payload");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = chunkwire(&["upload", &format!("http://127.0.0.1:{port}/"), file.path()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(7));
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.starts_with("chunkwire: connect failed"),
        "{message}"
    );
    assert!(
        message.contains(&port.to_string()) && message.contains("body bytes sent"),
        "{message}"
    );

    let output = chunkwire(&["upload", "http://h:99999/", file.path()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("invalid URL"),
        "{}",
        stderr(&output)
    );

    let output = chunkwire(&[
        "upload",
        "-H",
        "X-A: a\rb",
        "http://127.0.0.1:9/",
        file.path(),
    ])
    .output()
    .unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("invalid value for header \"X-A\""),
        "{}",
        stderr(&output)
    );
}

#[test]
fn max_time_ends_a_stalled_exchange_with_exit_28() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/slow", listener.local_addr().unwrap());
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        thread::sleep(Duration::from_secs(5));
        drop(stream);
    });
    let file = TempFile::new("slow", b"x");
    let started = Instant::now();
    let output = chunkwire(&["upload", "-m", "0.5", &url, file.path()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(28), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("maximum time"),
        "{}",
        stderr(&output)
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[test]
fn the_demo_uploads_intact() {
    let output = chunkwire(&["demo", "--size-mib", "8"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.lines().any(|l| l.starts_with("intact:       yes")),
        "{stdout}"
    );
}

#[test]
fn several_files_go_one_after_another_over_one_connection() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let first = TempFile::new("a.txt", b"first file");
    let second = TempFile::new("b.txt", b"second");
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
        .map(|_| sink.next_report(Duration::from_secs(5)).unwrap())
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
