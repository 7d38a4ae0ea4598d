//! `-w/--write-out`: each variable checked against the exchange it describes (as a loopback
//! server saw it), the format language, output on failure and with -Z, the library's
//! `Transfer`, and curl's own `-w` output for the same uploads to the same server.
#![cfg(feature = "cli")]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;

/// One request as the server saw it: the head's length, and the bytes after the head
/// (the body with its chunk framing, if chunked) and the body's own length.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    head_len: usize,
    wire_body_len: usize,
    body_len: usize,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// How long the server makes a request to `/slow` wait for its answer.
const SLOW: Duration = Duration::from_millis(300);

/// A keep-alive HTTP/1.1 server on loopback that reads each request whole (Content-Length
/// or chunked) and answers by path: `/rN` a 307 to `/r(N-1)` (`/r1` to `/done`), `/404` a
/// 404, `/slow` a 200 after [`SLOW`], anything else `200 ok`. It logs what it saw.
fn server() -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let server_log = Arc::clone(&log);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let log = Arc::clone(&server_log);
            thread::spawn(move || serve(stream, &log));
        }
    });
    (addr, log)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads into `buf` until it holds at least `len` bytes; false at the end of the stream.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, len: usize) -> bool {
    let mut chunk = [0u8; 65536];
    while buf.len() < len {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

/// Reads until `needle` is in `buf` at or after `from`; its end, or `None` at the end.
fn fill_until(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    from: usize,
    needle: &[u8],
) -> Option<usize> {
    loop {
        if let Some(at) = find(&buf[from..], needle) {
            return Some(from + at + needle.len());
        }
        let len = buf.len() + 1;
        if !fill(stream, buf, len) {
            return None;
        }
    }
}

fn serve(mut stream: TcpStream, log: &Log) {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = Vec::new();
    loop {
        let Some(head_end) = fill_until(&mut stream, &mut buf, 0, b"\r\n\r\n") else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse::<usize>().unwrap());
        let (wire_body_len, body_len) = if let Some(len) = length {
            if !fill(&mut stream, &mut buf, head_end + len) {
                return;
            }
            (len, len)
        } else if head.contains("transfer-encoding: chunked") {
            let mut at = head_end;
            let mut body = 0;
            loop {
                let Some(line_end) = fill_until(&mut stream, &mut buf, at, b"\r\n") else {
                    return;
                };
                let line = String::from_utf8_lossy(&buf[at..line_end - 2]).into_owned();
                let size =
                    usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
                if size == 0 {
                    // Trailers, then the empty line.
                    let mut line_start = line_end;
                    loop {
                        let Some(end) = fill_until(&mut stream, &mut buf, line_start, b"\r\n")
                        else {
                            return;
                        };
                        if end - line_start == 2 {
                            at = end;
                            break;
                        }
                        line_start = end;
                    }
                    break;
                }
                if !fill(&mut stream, &mut buf, line_end + size + 2) {
                    return;
                }
                body += size;
                at = line_end + size + 2;
            }
            (at - head_end, body)
        } else {
            (0, 0)
        };
        buf.drain(..head_end + wire_body_len);
        log.lock().unwrap().push(Seen {
            path: path.clone(),
            head_len: head_end,
            wire_body_len,
            body_len,
        });
        let reply: Vec<u8> = if let Some(n) = path.strip_prefix("/r") {
            let n: u32 = n.parse().unwrap_or(1);
            let next = if n > 1 {
                format!("/r{}", n - 1)
            } else {
                "/done".to_owned()
            };
            format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: {next}\r\nContent-Length: 5\r\n\r\nredir")
                .into_bytes()
        } else if path == "/404" {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found".to_vec()
        } else {
            if path == "/slow" {
                thread::sleep(SLOW);
            }
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()
        };
        if stream.write_all(&reply).is_err() {
            return;
        }
    }
}

/// A temporary file, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("chunkwire-write-out-{}-{name}", std::process::id()));
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

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn chunkwire(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chunkwire"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The `%{json}` object chunkwire wrote for one upload of `args` (with `-s -o /dev/null`).
fn json_of(args: &[&str]) -> (serde_json::Map<String, Value>, Output) {
    let mut all = vec!["upload", "-s", "-o", "/dev/null", "-w", "%{json}\\n"];
    all.extend_from_slice(args);
    let output = chunkwire(&all);
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let Ok(Value::Object(object)) = serde_json::from_str(stdout.trim_end()) else {
        panic!(
            "not one JSON object: {stdout:?}; stderr {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    (object, output)
}

fn seconds(json: &serde_json::Map<String, Value>, key: &str) -> f64 {
    json[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} in {json:?}"))
}

#[test]
fn sizes_are_the_bytes_the_server_saw() {
    let (addr, log) = server();
    let file = TempFile::new("sizes", &body(100_000));
    // Content-Length: size_upload is the file's size, size_request the head's length.
    let url = format!("http://{addr}/cl");
    let (json, _) = json_of(&["--content-length", &url, file.path()]);
    let seen = log.lock().unwrap().last().cloned().unwrap();
    assert_eq!(json["size_upload"], 100_000);
    assert_eq!(json["size_request"], seen.head_len);
    assert_eq!(json["size_download"], 2);
    assert_eq!(json["http_code"], 200);
    assert_eq!(json["num_connects"], 1);
    assert_eq!(json["url_effective"], url.as_str());
    assert_eq!(json["remote_ip"], "127.0.0.1");
    assert_eq!(json["remote_port"], addr.port());
    assert_eq!(json["exitcode"], 0);
    assert_eq!(json["errormsg"], Value::Null);
    // Chunked: size_upload counts the chunk framing, as curl counts it.
    let url = format!("http://{addr}/chunked");
    let (json, _) = json_of(&["--chunk-size", "4096", &url, file.path()]);
    let seen = log.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.body_len, 100_000);
    assert_eq!(json["size_upload"], seen.wire_body_len);
    assert_eq!(json["size_request"], seen.head_len);
    let speed = json["speed_upload"].as_f64().unwrap();
    let expected = seen.wire_body_len as f64 / seconds(&json, "time_total");
    assert!(
        (speed - expected).abs() <= expected * 0.01 + 1.0,
        "{speed} {expected}"
    );
}

#[test]
fn a_307_chain_counts_its_redirects_and_every_head() {
    let (addr, log) = server();
    let file = TempFile::new("redirects", &body(5_000));
    let (json, _) = json_of(&[
        "-L",
        "--content-length",
        &format!("http://{addr}/r3"),
        file.path(),
    ]);
    let seen = log.lock().unwrap().clone();
    assert_eq!(
        seen.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(),
        ["/r3", "/r2", "/r1", "/done"]
    );
    assert_eq!(json["num_redirects"], 3);
    assert_eq!(
        json["url_effective"],
        format!("http://{addr}/done").as_str()
    );
    assert_eq!(json["url"], format!("http://{addr}/r3").as_str());
    assert_eq!(json["http_code"], 200);
    // size_request adds up every request's head; size_upload is the last request's body.
    assert_eq!(
        json["size_request"],
        seen.iter().map(|s| s.head_len).sum::<usize>()
    );
    assert_eq!(json["size_upload"], 5_000);
    let connects = json["num_connects"].as_u64().unwrap();
    assert!((1..=4).contains(&connects), "{connects}");
    // Times add up over the requests, and stay in order.
    assert_monotone(&json, false);
}

fn assert_monotone(json: &serde_json::Map<String, Value>, tls: bool) {
    let [
        namelookup,
        connect,
        appconnect,
        pretransfer,
        starttransfer,
        total,
    ] = [
        "time_namelookup",
        "time_connect",
        "time_appconnect",
        "time_pretransfer",
        "time_starttransfer",
        "time_total",
    ]
    .map(|key| seconds(json, key));
    assert!(namelookup > 0.0, "{json:?}");
    assert!(namelookup <= connect, "{json:?}");
    if tls {
        assert!(
            connect <= appconnect && appconnect <= pretransfer,
            "{json:?}"
        );
    } else {
        // curl writes 0 for a connection without TLS.
        assert_eq!(appconnect, 0.0, "{json:?}");
    }
    assert!(connect <= pretransfer, "{json:?}");
    assert!(pretransfer <= starttransfer, "{json:?}");
    assert!(starttransfer <= total, "{json:?}");
}

#[test]
fn times_are_in_order_and_starttransfer_waits_for_the_first_response_byte() {
    let (addr, _log) = server();
    let file = TempFile::new("times", &body(20_000));
    let (json, _) = json_of(&[&format!("http://{addr}/slow"), file.path()]);
    assert_monotone(&json, false);
    // The server answers SLOW after the body: the first response byte comes no sooner.
    let waited = seconds(&json, "time_starttransfer") - seconds(&json, "time_pretransfer");
    assert!(waited >= SLOW.as_secs_f64() * 0.9, "{json:?}");
    // Six decimals, as curl writes seconds.
    let out = chunkwire(&[
        "upload",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{time_namelookup} %{time_total}",
        &format!("http://{addr}/t"),
        file.path(),
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    for value in text.split(' ') {
        let (whole, fraction) = value.split_once('.').unwrap();
        assert!(
            whole.parse::<u64>().is_ok() && fraction.len() == 6,
            "{text}"
        );
    }
}

#[test]
fn https_has_its_handshake_between_connect_and_pretransfer() {
    let tls = chunkwire::ServerTls::self_signed().unwrap();
    let ca = TempFile::new("ca.pem", tls.ca_pem().as_bytes());
    let sink = chunkwire::sink::Sink::bind("127.0.0.1:0")
        .unwrap()
        .with_tls(tls)
        .spawn()
        .unwrap();
    let file = TempFile::new("tls", &body(10_000));
    let url = sink.url("/tls");
    assert!(url.starts_with("https://"), "{url}");
    let (json, output) = json_of(&["--cacert", ca.path(), &url, file.path()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        seconds(&json, "time_appconnect") > seconds(&json, "time_connect"),
        "{json:?}"
    );
    assert_monotone(&json, true);
}

#[test]
fn failures_write_their_output_too() {
    // Connection refused: a port just freed.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = TempFile::new("fail", &body(1_000));
    let url = format!("http://127.0.0.1:{port}/x");
    let format = "%{http_code} %{exitcode} %{num_connects} [%{remote_ip}] %{remote_port} %{url_effective} %{errormsg}";
    let out = chunkwire(&["upload", "-s", "-w", format, &url, file.path()]);
    assert_eq!(out.status.code(), Some(7));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!("000 7 0 [] 0 {url} connect failed")),
        "{text}"
    );
    // A 404 with -f: exit 22, no body read, as curl.
    let (addr, _log) = server();
    let (json, output) = json_of(&[
        "-f",
        "--content-length",
        &format!("http://{addr}/404"),
        file.path(),
    ]);
    assert_eq!(output.status.code(), Some(22));
    assert_eq!(json["http_code"], 404);
    assert_eq!(json["exitcode"], 22);
    assert_eq!(json["size_download"], 0);
    assert_eq!(json["size_upload"], 1_000);
    assert!(
        json["errormsg"].as_str().unwrap().contains("404"),
        "{json:?}"
    );
    // Too many redirects: the last response's code and URL.
    let (json, output) = json_of(&[
        "-L",
        "--max-redirs",
        "1",
        &format!("http://{addr}/r3"),
        file.path(),
    ]);
    assert_eq!(output.status.code(), Some(47));
    assert_eq!(json["http_code"], 307);
    assert_eq!(json["num_redirects"], 1);
    assert_eq!(json["url_effective"], format!("http://{addr}/r2").as_str());
    // %{onerror}: the rest only for an upload that failed.
    let out = chunkwire(&[
        "upload",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "done%{onerror} failed",
        &format!("http://{addr}/ok"),
        file.path(),
    ]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "done");
    let out = chunkwire(&[
        "upload",
        "-s",
        "-w",
        "done%{onerror} failed",
        &url,
        file.path(),
    ]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "done failed");
}

#[test]
fn the_format_language_streams_and_files() {
    let (addr, _log) = server();
    let file = TempFile::new("format", &body(100));
    let url = format!("http://{addr}/f");
    let out = chunkwire(&[
        "upload",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "a\\t%{http_code}\\n%{stderr}b %{Bogus} %{HTTP_CODE}%{stdout}c%%\\q [%header{Content-LENGTH}]",
        &url,
        file.path(),
    ]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "a\t200\nc%\\q [2]");
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "b chunkwire: unknown --write-out variable: 'Bogus'\n 200"
    );
    // @file: the format read from a file, newline and all.
    let format = TempFile::new("format.txt", b"code %{http_code}\nsize %{size_upload}\n");
    let at = format!("@{}", format.path());
    let out = chunkwire(&[
        "upload",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        &at,
        "--content-length",
        &url,
        file.path(),
    ]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "code 200\nsize 100\n"
    );
    // @-: from standard input, when it is not the body.
    let mut child = Command::new(env!("CARGO_BIN_EXE_chunkwire"))
        .args([
            "upload",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "@-",
            &url,
            file.path(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"%{http_code}!")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "200!");
    let out = chunkwire(&["upload", "-s", "-w", "@-", &url, "-"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("standard input"));
    let out = chunkwire(&[
        "upload",
        "-s",
        "-w",
        "@/nonexistent/format",
        &url,
        file.path(),
    ]);
    assert_eq!(out.status.code(), Some(26));
}

#[test]
fn with_z_each_upload_writes_its_own() {
    let (addr, log) = server();
    let files: Vec<TempFile> = (0..3)
        .map(|i| TempFile::new(&format!("z{i}"), &body(1000 * (i + 1))))
        .collect();
    let base = format!("http://{addr}/z/");
    let mut args = vec![
        "upload",
        "-s",
        "-Z",
        "--content-length",
        "-o",
        "/dev/null",
        "-w",
        "%{json}\\n",
        &base,
    ];
    args.extend(files.iter().map(TempFile::path));
    let out = chunkwire(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut sizes: HashMap<String, u64> = HashMap::new();
    for line in text.lines() {
        let json: Value = serde_json::from_str(line).unwrap();
        sizes.insert(
            json["url_effective"].as_str().unwrap().to_owned(),
            json["size_upload"].as_u64().unwrap(),
        );
    }
    assert_eq!(sizes.len(), 3, "{text}");
    let seen = log.lock().unwrap().clone();
    for s in &seen {
        assert_eq!(
            sizes[&format!("http://{addr}{}", s.path)],
            s.body_len as u64
        );
    }
}

#[test]
fn the_library_tells_the_same_in_response_completed_and_error() {
    let (addr, log) = server();
    let client = chunkwire::Client::new();
    let mut response = client
        .upload(&format!("http://{addr}/r1"))
        .max_redirects(5)
        .send_seekable(std::io::Cursor::new(body(3000)))
        .unwrap();
    let before = response.transfer();
    assert_eq!(response.text().unwrap(), "ok");
    let transfer = response.transfer();
    assert_eq!(transfer.redirects, 1);
    assert_eq!(transfer.status, Some(200));
    assert!(transfer.url.ends_with("/done"));
    assert_eq!(transfer.remote_addr, Some(addr));
    let heads: usize = log.lock().unwrap().iter().map(|s| s.head_len).sum();
    assert_eq!(transfer.request_bytes, heads as u64);
    let t = transfer.timings;
    assert!(t.namelookup <= t.connect && t.connect <= t.pretransfer);
    assert!(t.pretransfer <= t.starttransfer && t.starttransfer <= t.total);
    assert!(before.timings.total <= t.total);
    assert_eq!(response.timings().starttransfer, t.starttransfer);
    drop(response);

    let mut uploads = client.uploads().unwrap();
    let id = uploads.add(
        client
            .upload(&format!("http://{addr}/many"))
            .content_length(7),
        &b"seven!!"[..],
    );
    let finished = uploads.next_finished().unwrap();
    assert_eq!(finished.id, id);
    let completed = finished.result.unwrap();
    assert_eq!(completed.transfer.upload_bytes, 7);
    assert_eq!(completed.transfer.status, Some(200));
    assert!(completed.transfer.timings.total >= completed.transfer.timings.starttransfer);

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = client
        .upload(&format!("http://127.0.0.1:{port}/refused"))
        .send(&b"x"[..])
        .unwrap_err();
    let transfer = err.transfer().expect("a failed attempt tells its transfer");
    assert_eq!(transfer.new_connections, 0);
    assert_eq!(transfer.status, None);
    assert_eq!(transfer.remote_addr, None);
    assert!(transfer.url.ends_with("/refused"));
    assert!(transfer.timings.total >= transfer.timings.namelookup);
}

/// curl's `-w` values for the same upload, when curl is installed.
fn curl(args: &[&str], stdin: Option<&str>) -> Option<serde_json::Map<String, Value>> {
    let mut command = Command::new("curl");
    command
        .args(["-s", "-o", "/dev/null", "-H", "Expect:", "-w", "%{json}"])
        .args(args)
        .stdout(Stdio::piped());
    match stdin {
        Some(path) => command.stdin(std::fs::File::open(path).unwrap()),
        None => command.stdin(Stdio::null()),
    };
    let output = command.output().ok()?;
    match serde_json::from_slice(&output.stdout) {
        Ok(Value::Object(object)) => Some(object),
        _ => panic!("curl wrote {:?}", String::from_utf8_lossy(&output.stdout)),
    }
}

/// One upload made by both: what it is, curl's arguments, the file curl and chunkwire
/// read as standard input (if any), and chunkwire's arguments.
type Case<'a> = (&'a str, Vec<String>, Option<&'a str>, Vec<String>);

/// The variables that describe the exchange itself, and so must agree with curl's.
const COMPARED: &[&str] = &[
    "http_code",
    "size_upload",
    "size_download",
    "num_redirects",
    "url_effective",
    "remote_ip",
    "remote_port",
    "exitcode",
];

#[test]
fn agrees_with_curl_for_the_same_uploads() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("curl is not installed: comparison skipped");
        return;
    }
    let (addr, _log) = server();
    let sink = chunkwire::sink::Sink::bind("127.0.0.1:0")
        .unwrap()
        .spawn()
        .unwrap();
    let file = TempFile::new("curl", &body(100_000));
    let f = file.path();
    let refused = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let at = |path: &str| format!("http://{addr}{path}");
    let sink_url = sink.url("/chunked");
    let chunked_stdin = sink.url("/stdin");
    let cases: Vec<Case> = vec![
        // curl frames stdin in chunks of 65524 bytes: the same chunk size gives the same
        // framing, so size_upload (framing included) must be equal.
        (
            "chunked from standard input",
            vec!["-T".into(), "-".into(), chunked_stdin.clone()],
            Some(f),
            vec![
                "--chunk-size".into(),
                "65524".into(),
                chunked_stdin.clone(),
                "-".into(),
            ],
        ),
        (
            "chunked to the server",
            vec!["-T".into(), "-".into(), at("/chunked")],
            Some(f),
            vec![
                "--chunk-size".into(),
                "65524".into(),
                at("/chunked"),
                f.into(),
            ],
        ),
        (
            "Content-Length to the sink",
            vec!["-T".into(), f.into(), sink_url.clone()],
            None,
            vec!["--content-length".into(), sink_url.clone(), f.into()],
        ),
        (
            "a 307 chain followed",
            vec!["-L".into(), "-T".into(), f.into(), at("/r3")],
            None,
            vec!["-L".into(), "--content-length".into(), at("/r3"), f.into()],
        ),
        (
            "a 307 not followed",
            vec!["-T".into(), f.into(), at("/r1")],
            None,
            vec!["--content-length".into(), at("/r1"), f.into()],
        ),
        (
            "too many redirects",
            vec![
                "-L".into(),
                "--max-redirs".into(),
                "1".into(),
                "-T".into(),
                f.into(),
                at("/r3"),
            ],
            None,
            vec![
                "-L".into(),
                "--max-redirs".into(),
                "1".into(),
                "--content-length".into(),
                at("/r3"),
                f.into(),
            ],
        ),
        (
            "404 with -f",
            vec!["-f".into(), "-T".into(), f.into(), at("/404")],
            None,
            vec!["-f".into(), "--content-length".into(), at("/404"), f.into()],
        ),
        (
            "404 without -f",
            vec!["-T".into(), f.into(), at("/404")],
            None,
            vec!["--content-length".into(), at("/404"), f.into()],
        ),
        (
            "connection refused",
            vec![
                "-T".into(),
                f.into(),
                format!("http://127.0.0.1:{refused}/x"),
            ],
            None,
            vec![format!("http://127.0.0.1:{refused}/x"), f.into()],
        ),
    ];
    for (what, curl_args, stdin, ours) in cases {
        let curl_args: Vec<&str> = curl_args.iter().map(String::as_str).collect();
        let Some(theirs) = curl(&curl_args, stdin) else {
            eprintln!("curl did not run: comparison skipped");
            return;
        };
        let ours: Vec<&str> = ours.iter().map(String::as_str).collect();
        let mut all = vec!["upload", "-s", "-o", "/dev/null", "-w", "%{json}"];
        all.extend_from_slice(&ours);
        let mut command = Command::new(env!("CARGO_BIN_EXE_chunkwire"));
        command.args(&all);
        match stdin {
            Some(path) => command.stdin(std::fs::File::open(path).unwrap()),
            None => command.stdin(Stdio::null()),
        };
        let output = command.output().unwrap();
        let mine: serde_json::Map<String, Value> = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| {
                panic!("{what}: {e}: {:?}", String::from_utf8_lossy(&output.stdout))
            });
        for key in COMPARED {
            // curl reads the body of the redirect it refuses to follow; chunkwire stops at
            // its head (and closes the connection), so it downloaded nothing.
            if what == "too many redirects" && *key == "size_download" {
                assert_eq!(mine[*key], 0);
                continue;
            }
            assert_eq!(
                mine[*key], theirs[*key],
                "{what}: {key}: chunkwire {mine:?}\ncurl {theirs:?}"
            );
        }
        assert_eq!(
            output.status.code(),
            Some(i32::from(theirs["exitcode"].as_u64().unwrap() as u8)),
            "{what}"
        );
    }
}

#[test]
fn a_form_writes_its_output_as_a_file_upload_does() {
    let (addr, log) = server();
    let file = TempFile::new("form", &body(5_000));
    let url = format!("http://{addr}/form");
    let part = format!("f=@{}", file.path());
    let (json, _) = json_of(&["-F", "a=1", "-F", &part, &url]);
    let seen = log.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.path, "/form");
    // A form of sized parts goes with its length: size_upload is the whole form.
    assert_eq!(json["size_upload"], seen.body_len);
    assert!(seen.body_len > 5_000, "{seen:?}");
    assert_eq!(json["size_request"], seen.head_len);
    assert_eq!(json["http_code"], 200);
    assert_eq!(json["url_effective"], url.as_str());
    // A form whose file is missing fails before connecting, and -w still writes.
    let (json, output) = json_of(&["-F", "f=@/nonexistent/chunkwire-form-part", &url]);
    assert_eq!(output.status.code(), Some(26));
    assert_eq!(json["exitcode"], 26);
    assert_eq!(json["http_code"], 0);
    assert!(
        json["errormsg"].as_str().unwrap().contains("nonexistent"),
        "{json:?}"
    );
}
