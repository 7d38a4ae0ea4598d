//! The `chunkwire upload` command must not destroy or misuse the user's files: an output
//! or trace that is the source, an output emptied by a failed upload, a write error that
//! is ignored, a source that cannot be read, a standard input that is not at its start, a
//! file that shrinks while it is sent. Each test runs the real binary against loopback
//! servers that stop by themselves.
#![cfg(feature = "cli")]

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use chunkwire::sink::{Framing, Sink};

const REPORT_WAIT: Duration = Duration::from_secs(5);

fn chunkwire(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chunkwire"));
    command.args(args).stdin(Stdio::null());
    command
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A directory of its own for each test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("chunkwire-safety-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// Writes `contents` to `name` in the directory; returns its path.
    fn file(&self, name: &str, contents: &[u8]) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        self.path(name)
    }

    /// The path of `name` in the directory, which need not exist.
    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A listener nobody accepts on: after the command ran, `assert_untouched` checks that the
/// client never connected (the kernel queues a connection even when nobody accepts it).
struct Untouched(TcpListener);

impl Untouched {
    fn new() -> (Untouched, String) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/up", listener.local_addr().unwrap());
        (Untouched(listener), url)
    }

    fn assert_untouched(&self, case: &str) {
        match self.0.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => panic!("{case}: the client connected: {other:?}"),
        }
    }
}

/// Serves one connection on a thread: reads the request head and whatever body follows
/// within a short quiet time, then sends `reply`. Gives back what it read. Waits at most
/// five seconds for the connection.
fn answer_once(reply: Vec<u8>) -> (String, thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/up", listener.local_addr().unwrap());
    let server = thread::spawn(move || {
        let Some(mut stream) = accept_within(&listener, Duration::from_secs(5)) else {
            return Vec::new();
        };
        let seen = read_until_quiet(&mut stream, Duration::from_millis(300));
        let _ = stream.write_all(&reply);
        seen
    });
    (url, server)
}

fn accept_within(listener: &TcpListener, wait: Duration) -> Option<TcpStream> {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + wait;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                return Some(stream);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(_) => return None,
        }
    }
}

/// Reads until the peer closes or sends nothing for `quiet` (after at least a head).
fn read_until_quiet(stream: &mut TcpStream, quiet: Duration) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(5);
    stream.set_read_timeout(Some(quiet)).unwrap();
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if find(&seen, b"\r\n\r\n").is_some() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    seen
}

/// Asserts a one-line error with the exit code and the words expected.
fn assert_refused(output: &Output, code: i32, words: &str, case: &str) {
    let message = stderr(output);
    assert_eq!(output.status.code(), Some(code), "{case}: {message}");
    assert_eq!(message.lines().count(), 1, "{case}: {message}");
    assert!(message.starts_with("chunkwire: "), "{case}: {message}");
    assert!(message.contains(words), "{case}: {message}");
    assert!(output.stdout.is_empty(), "{case}");
}

// --- 1. The output file (-o) ---------------------------------------------------------

#[test]
fn an_output_that_is_a_source_is_refused_before_connecting() {
    let dir = TempDir::new("output-is-source");
    let data = pattern(5000);
    let source = dir.file("data.bin", &data);
    let other = dir.file("other.bin", b"another source");
    std::fs::hard_link(&source, dir.path("link.bin")).unwrap();
    let dotted = format!("{}/./data.bin", dir.0.display());
    let cases: [(&str, Vec<&str>); 4] = [
        ("the same path", vec![&source]),
        ("another spelling", vec![&source]),
        ("a hard link", vec![&source]),
        ("the second of two files", vec![&other, &source]),
    ];
    let outputs = [source.clone(), dotted, dir.path("link.bin"), source.clone()];
    for ((case, files), out) in cases.iter().zip(&outputs) {
        let (listener, url) = Untouched::new();
        let mut args = vec!["upload", "-m", "2", "-o", out, &url];
        args.extend(files);
        let output = chunkwire(&args).output().unwrap();
        assert_refused(&output, 2, "is the same file as", case);
        assert!(stderr(&output).contains("data.bin"), "{case}");
        listener.assert_untouched(case);
        assert_eq!(
            std::fs::read(&source).unwrap(),
            data,
            "{case}: source intact"
        );
    }
}

#[test]
fn a_failed_upload_leaves_an_existing_output_alone() {
    let dir = TempDir::new("failed-output");
    let source = dir.file("body", b"payload");
    let out = dir.file("out", b"precious earlier output");

    // Connection refused: curl leaves `-o` untouched, since no body byte came.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let output = chunkwire(&["upload", "-o", &out, &url, &source])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    assert_eq!(std::fs::read(&out).unwrap(), b"precious earlier output");

    // `-f` and an HTTP error: exit 22, and, as with curl, no body written and the file kept.
    let (url, server) =
        answer_once(b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope".to_vec());
    let output = chunkwire(&["upload", "-f", "-o", &out, &url, &source])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(22), "{}", stderr(&output));
    server.join().unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), b"precious earlier output");

    // A missing output file is not created by a failed upload either.
    let fresh = dir.path("fresh");
    let output = chunkwire(&[
        "upload",
        "-o",
        &fresh,
        &format!("http://127.0.0.1:{port}/"),
        &source,
    ])
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    assert!(!Path::new(&fresh).exists());
}

#[test]
fn an_empty_response_body_still_makes_the_output_file() {
    // curl 7.88 (`curl -o x URL` against `Content-Length: 0`) creates an empty `x` when the
    // transfer succeeds, and truncates one that was there: the output is the (empty) body.
    let dir = TempDir::new("empty-body");
    let source = dir.file("body", b"payload");
    for existing in [false, true] {
        let out = if existing {
            dir.file("out", b"older output")
        } else {
            dir.path("new-out")
        };
        let (url, server) = answer_once(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec());
        let output = chunkwire(&["upload", "-o", &out, &url, &source])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        server.join().unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"", "existing: {existing}");
    }
}

#[test]
fn the_output_gets_every_body_of_several_uploads() {
    let dir = TempDir::new("several-outputs");
    let a = dir.file("a", b"first");
    let b = dir.file("b", b"second");
    let out = dir.file("out", &[b'#'; 4096]);
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let output = chunkwire(&["upload", "-o", &out, &sink.url("/many/"), &a, &b])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let first = sink.next_report(REPORT_WAIT).unwrap();
    let second = sink.next_report(REPORT_WAIT).unwrap();
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("{}\n{}\n", first.to_json(), second.to_json())
    );
}

// --- 2. The trace file ---------------------------------------------------------------

#[test]
fn a_trace_that_is_a_source_or_the_output_is_refused() {
    let dir = TempDir::new("trace-is-source");
    let data = pattern(3000);
    let source = dir.file("data.bin", &data);
    let dotted = format!("{}/./data.bin", dir.0.display());
    for option in ["--trace-ascii", "--trace", "--trace-json"] {
        for trace in [&source, &dotted] {
            let (listener, url) = Untouched::new();
            let output = chunkwire(&["upload", "-m", "2", option, trace, &url, &source])
                .output()
                .unwrap();
            let case = format!("{option} {trace}");
            assert_refused(&output, 2, "is the same file as", &case);
            listener.assert_untouched(&case);
            assert_eq!(
                std::fs::read(&source).unwrap(),
                data,
                "{case}: source intact"
            );
        }
    }

    // The trace and the output cannot share a file either, whether it exists or not.
    let existing = dir.file("out", b"older output");
    let missing = dir.path("new");
    let missing_dotted = format!("{}/./new", dir.0.display());
    for (out, trace) in [
        (&existing, &existing),
        (&missing, &missing),
        (&missing, &missing_dotted),
    ] {
        let (listener, url) = Untouched::new();
        let output = chunkwire(&[
            "upload",
            "-m",
            "2",
            "-o",
            out,
            "--trace-ascii",
            trace,
            &url,
            &source,
        ])
        .output()
        .unwrap();
        let case = format!("-o {out} --trace-ascii {trace}");
        assert_refused(&output, 2, "the same file", &case);
        listener.assert_untouched(&case);
    }
    assert_eq!(std::fs::read(&existing).unwrap(), b"older output");
    assert!(!Path::new(&missing).exists());
}

#[test]
fn output_and_trace_may_both_be_a_device() {
    // Only regular files overwrite each other: `-o /dev/null --trace-ascii /dev/null` is
    // how a benchmark discards both, and curl accepts it.
    let dir = TempDir::new("device-outputs");
    let source = dir.file("body", b"payload");
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let output = chunkwire(&[
        "upload",
        "-o",
        "/dev/null",
        "--trace-ascii",
        "/dev/null",
        &sink.url("/dev/"),
        &source,
    ])
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(sink.next_report(REPORT_WAIT).unwrap().bytes, 7);
}

// --- 3. Write errors on the output ---------------------------------------------------

#[test]
fn a_write_error_on_the_output_is_exit_23() {
    let dir = TempDir::new("write-error");
    let source = dir.file("body", b"payload");
    let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec();

    // Standard output on a full device: the two bytes sit in the buffer until the final
    // flush, which must not be ignored. curl says "(23) Failed writing body".
    let (url, server) = answer_once(reply.clone());
    let output = chunkwire(&["upload", &url, &source])
        .stdout(File::options().write(true).open("/dev/full").unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    server.join().unwrap();
    assert_refused(&output, 23, "write", "stdout on /dev/full");

    // Standard output a pipe whose reader is gone (`| true`): EPIPE.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let (url, server) = answer_once(reply.clone());
    let output = chunkwire(&["upload", &url, &source])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    server.join().unwrap();
    assert_refused(&output, 23, "write", "stdout a closed pipe");

    // `-o` on a full device.
    let (url, server) = answer_once(reply);
    let output = chunkwire(&["upload", "-o", "/dev/full", &url, &source])
        .output()
        .unwrap();
    server.join().unwrap();
    assert_refused(&output, 23, "/dev/full", "-o /dev/full");
}

// --- 4. Sources that cannot be read --------------------------------------------------

#[test]
fn a_source_that_cannot_be_read_is_exit_26_before_connecting() {
    let dir = TempDir::new("unreadable");
    let good = dir.file("good", b"fine");
    let subdir = dir.path("subdir");
    std::fs::create_dir(&subdir).unwrap();
    let missing = dir.path("missing");
    // As curl: "(26) Failed to open/read local data from file/application".
    for (case, files) in [
        ("a directory", vec![subdir.as_str()]),
        ("a missing file", vec![missing.as_str()]),
        (
            "a good file, then a directory",
            vec![good.as_str(), &subdir],
        ),
        (
            "a good file, then a missing one",
            vec![good.as_str(), &missing],
        ),
    ] {
        let (listener, url) = Untouched::new();
        let mut args = vec!["upload", "-m", "2", url.as_str()];
        args.extend(files);
        let output = chunkwire(&args).output().unwrap();
        assert_refused(&output, 26, "cannot read", case);
        listener.assert_untouched(case);
    }

    // A directory on standard input (`- < dir`).
    let (listener, url) = Untouched::new();
    let output = chunkwire(&["upload", "-m", "2", &url, "-"])
        .stdin(File::open(&subdir).unwrap())
        .output()
        .unwrap();
    assert_refused(&output, 26, "standard input", "stdin a directory");
    listener.assert_untouched("stdin a directory");

    // A file without read permission; root reads it anyway, so the case is skipped there.
    let locked = dir.file("locked", b"secret");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o200)).unwrap();
    if File::open(&locked).is_err() {
        let (listener, url) = Untouched::new();
        let output = chunkwire(&["upload", "-m", "2", &url, &locked])
            .output()
            .unwrap();
        assert_refused(&output, 26, "cannot read", "no read permission");
        listener.assert_untouched("no read permission");
    }
}

// --- 5. Standard input at an offset --------------------------------------------------

#[test]
fn content_length_of_standard_input_counts_from_its_offset() {
    let dir = TempDir::new("stdin-offset");
    let data = pattern(1000);
    let path = dir.file("body", &data);
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    for content_length in [true, false] {
        // `(head -c 10 >/dev/null; chunkwire upload ...) < file`
        let mut stdin = File::open(&path).unwrap();
        stdin.seek(SeekFrom::Start(10)).unwrap();
        let mut args = vec!["upload"];
        if content_length {
            args.push("--content-length");
        }
        let url = sink.url("/offset");
        args.extend([url.as_str(), "-"]);
        let output = chunkwire(&args).stdin(stdin).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let report = sink.next_report(REPORT_WAIT).unwrap();
        let expected = if content_length {
            Framing::ContentLength
        } else {
            Framing::Chunked
        };
        assert_eq!(report.framing, expected);
        assert_eq!(report.bytes, 990);
        assert_eq!(report.crc32, crc32fast::hash(&data[10..]));
    }
}

#[test]
fn standard_input_from_a_file_is_sent_again_after_a_307() {
    let dir = TempDir::new("stdin-redirect");
    let data = pattern(2000);
    let path = dir.file("body", &data);
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let reply = format!(
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: {}\r\nContent-Length: 0\r\n\r\n",
        sink.url("/moved")
    );
    let (url, server) = answer_once(reply.into_bytes());
    let mut stdin = File::open(&path).unwrap();
    stdin.seek(SeekFrom::Start(10)).unwrap();
    let output = chunkwire(&["upload", "-L", &url, "-"])
        .stdin(stdin)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    server.join().unwrap();
    let report = sink.next_report(REPORT_WAIT).unwrap();
    assert_eq!(report.target, "/moved");
    assert_eq!(report.bytes, 1990);
    assert_eq!(report.crc32, crc32fast::hash(&data[10..]));
}

// --- 6. -H 'Transfer-Encoding: chunked' ----------------------------------------------

#[test]
fn transfer_encoding_chunked_as_a_header_is_what_is_sent_anyway() {
    let dir = TempDir::new("te-header");
    let source = dir.file("body", b"payload");
    // curl's idiom for a chunked upload (`curl -T f -H 'Transfer-Encoding: chunked'`).
    for header in ["Transfer-Encoding: chunked", "transfer-encoding:  Chunked "] {
        let (url, server) = answer_once(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec());
        let output = chunkwire(&["upload", "-H", header, &url, &source])
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{header}: {}",
            stderr(&output)
        );
        let request = String::from_utf8(server.join().unwrap()).unwrap();
        let lower = request.to_ascii_lowercase();
        assert_eq!(lower.matches("transfer-encoding").count(), 1, "{request}");
        assert!(
            request.contains("Transfer-Encoding: chunked\r\n"),
            "{request}"
        );
        assert!(request.ends_with("7\r\npayload\r\n0\r\n\r\n"), "{request}");
    }

    // With --content-length the two ask for different framings.
    let (listener, url) = Untouched::new();
    let output = chunkwire(&[
        "upload",
        "-m",
        "2",
        "--content-length",
        "-H",
        "Transfer-Encoding: chunked",
        &url,
        &source,
    ])
    .output()
    .unwrap();
    assert_refused(&output, 2, "conflict", "with --content-length");
    listener.assert_untouched("with --content-length");

    // Any other transfer coding is still chunkwire's to decide.
    let (listener, url) = Untouched::new();
    let output = chunkwire(&[
        "upload",
        "-m",
        "2",
        "-H",
        "Transfer-Encoding: gzip",
        &url,
        &source,
    ])
    .output()
    .unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("Transfer-Encoding"),
        "{}",
        stderr(&output)
    );
    listener.assert_untouched("gzip");
}

// --- 7. A file that shrinks while it is sent -----------------------------------------

#[test]
fn a_file_that_shrinks_during_a_chunked_upload_fails_without_a_last_chunk() {
    let dir = TempDir::new("shrinks");
    let data = pattern(256 * 1024);
    let path = dir.file("body", &data);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/up", listener.local_addr().unwrap());
    let shrink = path.clone();
    let server = thread::spawn(move || {
        let mut stream = accept_within(&listener, Duration::from_secs(5)).unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while find(&seen, b"\r\n\r\n").is_none() {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return seen,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        // The head is here; the rate limit keeps most of the body still unread.
        File::options()
            .write(true)
            .open(&shrink)
            .unwrap()
            .set_len(2048)
            .unwrap();
        seen.extend(read_until_quiet(&mut stream, Duration::from_secs(3)));
        seen
    });
    let output = chunkwire(&[
        "upload",
        "--chunk-size",
        "1k",
        "--limit-rate",
        "64k",
        &url,
        &path,
    ])
    .output()
    .unwrap();
    let seen = server.join().unwrap();
    let message = stderr(&output);
    // curl's 26: the local source could not be read as it was.
    assert_eq!(output.status.code(), Some(26), "{message}");
    assert!(
        message.contains("shrank from 262144 to 2048 bytes while it was being sent"),
        "{message}"
    );
    assert!(
        message.contains("body"),
        "the message names the file: {message}"
    );
    assert!(
        find(&seen, b"\r\n0\r\n\r\n").is_none(),
        "a last chunk was sent"
    );
    assert!(seen.len() < data.len(), "{} bytes arrived", seen.len());
}
