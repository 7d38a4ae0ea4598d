//! Defects a review found in forms, proxies, captures and `-w`, each pinned by the command
//! line that showed it: a capture on standard output that other output garbled, a `-F`
//! error message with a run of spaces in it, an empty `no_proxy` that hid `NO_PROXY`, and
//! a text trace whose failed writes went unsaid.
#![cfg(feature = "cli")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// A file under the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("chunkwire-review-{}-{name}", std::process::id()));
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

/// The CLI's `upload` with only `vars` in its environment.
fn run(vars: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chunkwire"))
        .env_clear()
        .envs(vars.iter().copied())
        .arg("upload")
        .args(["-s", "--max-time", "20"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A server answering every request `200 ok` (after reading its head and body until the
/// client pauses), on as many connections as come; each request's text goes to the channel.
fn answering_server() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            thread::spawn(move || answer(stream, &tx));
        }
    });
    (port, rx)
}

fn answer(mut stream: TcpStream, tx: &mpsc::Sender<String>) {
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 16384];
    // Until the client has nothing more to say for a moment (or closes).
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    let _ = tx.send(String::from_utf8_lossy(&seen).into_owned());
    let _ =
        stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
}

fn first_line(request: &str) -> &str {
    request.lines().next().unwrap_or("")
}

/// The pcapng section header block's type, which every capture starts with.
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

#[test]
fn a_capture_on_standard_output_refuses_write_out_text_there_too() {
    let (port, _seen) = answering_server();
    let url = format!("http://127.0.0.1:{port}/");
    let file = TempFile::new("pcap-w.txt", b"hello\n");
    let body = TempFile::new("pcap-w.out", b"");
    // `-w` writes to standard output unless it says %{stderr}: into the capture's bytes,
    // which no reader of pcapng then opens.
    let out = run(
        &[],
        &[
            "--trace-pcap",
            "-",
            "-o",
            body.path(),
            "-w",
            "code %{http_code}\n",
            &url,
            file.path(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("-w") && stderr(&out).contains("--trace-pcap -"),
        "the error names both: {}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty(), "nothing is sent or written");

    // The same with -F.
    let out = run(
        &[],
        &[
            "--trace-pcap",
            "-",
            "-o",
            body.path(),
            "-w",
            "%{stderr}x%{stdout}code %{http_code}",
            &url,
            "-F",
            "a=b",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // Sent to standard error, -w leaves the capture whole.
    let out = run(
        &[],
        &[
            "--trace-pcap",
            "-",
            "-o",
            body.path(),
            "-w",
            "%{stderr}code %{http_code}",
            &url,
            file.path(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("code 200"), "{}", stderr(&out));
    assert_eq!(
        out.stdout[..4],
        PCAPNG_MAGIC,
        "the capture starts the output"
    );
}

#[test]
fn a_capture_on_standard_output_refuses_a_text_trace_there_too() {
    let (port, _seen) = answering_server();
    let url = format!("http://127.0.0.1:{port}/");
    let file = TempFile::new("pcap-trace.txt", b"hello\n");
    let body = TempFile::new("pcap-trace.out", b"");
    for option in ["--trace-ascii", "--trace", "--trace-json"] {
        let out = run(
            &[],
            &[
                "--trace-pcap",
                "-",
                option,
                "-",
                "-o",
                body.path(),
                &url,
                file.path(),
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{option}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(option) && stderr(&out).contains("standard output"),
            "{option}: {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "{option}: nothing is written");
    }
}

#[test]
fn an_unknown_form_parameter_is_reported_in_one_readable_sentence() {
    let out = run(&[], &["http://127.0.0.1:9/", "-F", "a=@x;foo=bar"]);
    assert_eq!(out.status.code(), Some(2));
    let text = stderr(&out);
    assert!(text.contains("unknown parameter \"foo=bar\""), "{text}");
    assert!(
        !text.contains("  "),
        "no run of spaces inside the message: {text:?}"
    );
}

#[test]
fn an_empty_lowercase_no_proxy_leaves_the_uppercase_one_in_force_as_in_curl() {
    // curl (and Go's httpproxy) take an empty variable as an unset one, for the proxy
    // variables and for no_proxy alike: NO_PROXY=* then sends the upload direct.
    let (port, seen) = answering_server();
    let (proxy_port, through_proxy) = answering_server();
    let url = format!("http://127.0.0.1:{port}/direct");
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    let file = TempFile::new("noproxy.txt", b"hello\n");
    let out = run(
        &[("http_proxy", &proxy), ("no_proxy", ""), ("NO_PROXY", "*")],
        &["-v", &url, file.path()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("matches \"*\" in the environment variable NO_PROXY"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        first_line(&seen.recv_timeout(Duration::from_secs(5)).unwrap()),
        "PUT /direct HTTP/1.1"
    );
    assert!(through_proxy.try_recv().is_err(), "the proxy saw nothing");
}

#[test]
fn a_text_trace_that_cannot_be_written_is_warned_about() {
    let (port, _seen) = answering_server();
    let url = format!("http://127.0.0.1:{port}/");
    let file = TempFile::new("trace-full.txt", b"hello\n");
    // /dev/full takes the open and refuses every write, as a full disk does.
    let out = run(
        &[],
        &[
            "--trace-ascii",
            "/dev/full",
            "-o",
            "/dev/null",
            &url,
            file.path(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "the upload itself went well: {}",
        stderr(&out)
    );
    let text = stderr(&out);
    assert!(
        text.contains("warning") && text.contains("/dev/full") && text.contains("trace"),
        "the lost trace is said: {text}"
    );
}

/// The CLI with `vars` (any bytes, as a Unix environment holds) as its whole environment.
fn run_with_bytes(vars: &[(&str, &[u8])], args: &[&str]) -> Output {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    Command::new(env!("CARGO_BIN_EXE_chunkwire"))
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (k, OsStr::from_bytes(v))))
        .arg("upload")
        .args(["-s", "-v", "--max-time", "20"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn proxy_variables_that_are_not_utf8_are_read_not_dropped() {
    let (port, seen) = answering_server();
    let (proxy_port, through_proxy) = answering_server();
    let url = format!("http://127.0.0.1:{port}/direct");
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    let file = TempFile::new("nonutf8.txt", b"hello\n");

    // One bad byte in one entry: the other entries still send the host direct.
    let out = run_with_bytes(
        &[
            ("http_proxy", proxy.as_bytes()),
            ("no_proxy", b"\xff.example,127.0.0.1"),
        ],
        &[&url, file.path()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("direct"), "{}", stderr(&out));
    assert_eq!(
        first_line(&seen.recv_timeout(Duration::from_secs(5)).unwrap()),
        "PUT /direct HTTP/1.1"
    );

    // A REQUEST_METHOD of any bytes is a CGI environment: http_proxy is not read.
    let out = run_with_bytes(
        &[
            ("http_proxy", proxy.as_bytes()),
            ("REQUEST_METHOD", b"G\xffT"),
        ],
        &[&url, file.path()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("REQUEST_METHOD"), "{}", stderr(&out));
    assert_eq!(
        first_line(&seen.recv_timeout(Duration::from_secs(5)).unwrap()),
        "PUT /direct HTTP/1.1"
    );
    assert!(through_proxy.try_recv().is_err(), "the proxy saw nothing");

    // A proxy that is not UTF-8 is an invalid proxy, not no proxy at all.
    let out = run_with_bytes(
        &[("http_proxy", b"http://\xffproxy:8080")],
        &[&url, file.path()],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("invalid proxy") && stderr(&out).contains("http_proxy"),
        "{}",
        stderr(&out)
    );
    assert!(seen.try_recv().is_err(), "nothing went direct");
}

#[test]
fn a_form_parameter_without_its_value_is_refused_not_sent_empty() {
    let (port, seen) = answering_server();
    let url = format!("http://127.0.0.1:{port}/");
    let file = TempFile::new("form-param.txt", b"hello\n");
    // `;filename` without `=` sent filename="" (which servers take for "no file chosen"),
    // and `;type` or `;type=` dropped the part's Content-Type: a typo changed the form.
    for param in [";filename", ";type", ";type=", "; type = "] {
        let part = format!("a=@{}{param}", file.path());
        let out = run(&[], &[&url, "-F", &part]);
        assert_eq!(out.status.code(), Some(2), "{param}: {}", stderr(&out));
        let text = stderr(&out);
        assert!(
            text.contains(param.trim_start_matches(';').trim().trim_end_matches('=')),
            "{param}: the error names the parameter: {text}"
        );
    }
    assert!(seen.try_recv().is_err(), "nothing was sent");
    // An explicitly empty file name stays possible, as in curl.
    let part = format!("a=@{};filename=", file.path());
    let out = run(&[], &[&url, "-F", &part]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_proxy_header_named_host_does_not_replace_the_origins_host_in_absolute_form() {
    // As in the CONNECT, and as curl: --proxy-header is for the proxy; the Host of a
    // request in absolute form is the origin's (a proxy that keeps it passes it on).
    let (proxy_port, through_proxy) = answering_server();
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    let file = TempFile::new("proxy-host.txt", b"hello\n");
    let out = run(
        &[],
        &[
            "-x",
            &proxy,
            "--proxy-header",
            "Host: proxy-only.example",
            "--proxy-header",
            "X-For-Proxy: 1",
            "http://origin.example:8080/x",
            file.path(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let request = through_proxy.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        first_line(&request),
        "PUT http://origin.example:8080/x HTTP/1.1"
    );
    let head = request.split("\r\n\r\n").next().unwrap();
    assert!(head.contains("\r\nHost: origin.example:8080\r\n"), "{head}");
    assert!(!head.contains("proxy-only.example"), "{head}");
    assert!(head.contains("\r\nX-For-Proxy: 1\r\n"), "{head}");
}

#[test]
fn a_proxy_answering_the_connect_with_endless_interim_answers_is_an_error_not_a_hang() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf);
        // A 102 every few milliseconds, for longer than the test's --max-time: each one
        // is progress to a stall timer, so only a count ends it.
        for _ in 0..10_000 {
            if stream
                .write_all(b"HTTP/1.1 102 Processing\r\n\r\n")
                .is_err()
            {
                return;
            }
            thread::sleep(Duration::from_millis(3));
        }
    });
    let file = TempFile::new("interim.txt", b"hello\n");
    let proxy = format!("http://127.0.0.1:{port}");
    let out = run(
        &[],
        &["-x", &proxy, "https://origin.example/x", file.path()],
    );
    assert_eq!(out.status.code(), Some(56), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains("proxy") && text.contains("interim"),
        "the proxy stage and why: {text}"
    );
}

#[test]
fn a_content_type_header_with_a_boundary_of_its_own_is_refused_for_a_form() {
    // The form's boundary is the one chunkwire made: a second `boundary=` in the field
    // (`...; boundary=xyz; boundary=----chunkwire-...`, as curl sends) leaves servers that
    // read the first one unable to find a single part.
    let (port, seen) = answering_server();
    let url = format!("http://127.0.0.1:{port}/");
    for header in [
        "Content-Type: multipart/form-data; boundary=xyz",
        "Content-Type: multipart/mixed;Boundary = \"xyz\"",
    ] {
        let out = run(&[], &["-H", header, &url, "-F", "a=b"]);
        assert_eq!(out.status.code(), Some(3), "{header}: {}", stderr(&out));
        assert!(stderr(&out).contains("boundary"), "{}", stderr(&out));
    }
    assert!(seen.try_recv().is_err(), "nothing was sent");
    // A multipart type of the caller's own still gets the boundary.
    let out = run(
        &[],
        &["-H", "Content-Type: multipart/mixed", &url, "-F", "a=b"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let request = seen.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        request.contains("Content-Type: multipart/mixed; boundary=----chunkwire-"),
        "{request}"
    );
}

#[test]
fn a_key_log_that_is_the_file_uploaded_is_refused_before_connecting() {
    // The handshake appends the session's secrets to SSLKEYLOGFILE before the body is
    // read: were it the file being uploaded, a chunked upload would send them along.
    let (port, seen) = answering_server();
    let url = format!("http://127.0.0.1:{port}/");
    let file = TempFile::new("keylog-source.txt", b"hello\n");
    let part = format!("a=@{}", file.path());
    for args in [
        vec![url.as_str(), file.path()],
        vec![url.as_str(), "-F", &part],
    ] {
        let out = run(&[("SSLKEYLOGFILE", file.path())], &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("SSLKEYLOGFILE"), "{}", stderr(&out));
    }
    assert!(seen.try_recv().is_err(), "nothing was sent");
    assert_eq!(std::fs::read(&file.0).unwrap(), b"hello\n");
}

#[test]
fn a_capture_on_standard_output_by_its_device_name_is_refused_too() {
    let file =
        std::env::temp_dir().join(format!("chunkwire-review-devstdout-{}", std::process::id()));
    std::fs::write(&file, b"body").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chunkwire"))
        .args(["upload", "-s", "--trace-pcap", "/dev/stdout"])
        .arg("http://127.0.0.1:9/")
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    // Without -o the body would go into the capture: refused before connecting, as `-`.
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn a_closed_standard_error_is_no_panic_and_the_exit_code_still_says_what_failed() {
    let file = std::env::temp_dir().join(format!("chunkwire-review-stderr-{}", std::process::id()));
    std::fs::write(&file, b"body").unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chunkwire"))
        .args(["upload", "-v", "http://127.0.0.1:9/"])
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reading end goes before the CLI writes its first line: every write to standard
    // error then fails (EPIPE), as under `chunkwire ... 2>&1 | head -0`.
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    let _ = std::fs::remove_file(&file);
    assert_eq!(
        status.code(),
        Some(7),
        "a connect failure, not a panic (101)"
    );
}
