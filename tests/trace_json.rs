//! Every `--trace-json` line, and the sink's JSON report, is valid JSON for any input:
//! checked with serde_json, a parser no one here wrote, against hostile replies (bytes that
//! are not UTF-8, control bytes, masked secrets), failed uploads and arbitrary note text.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use chunkwire::Client;
use chunkwire::trace::{Direction, Part, Trace, TraceFormat, TraceWriter};
use proptest::prelude::*;
use serde_json::Value;

/// A `Vec<u8>` the test keeps a handle on while the trace writes to it.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("a JSON trace is UTF-8")
    }
}

/// Every line of `trace`, parsed; panics naming the first line that is not a JSON object.
fn parse_lines(trace: &str) -> Vec<serde_json::Map<String, Value>> {
    assert!(trace.ends_with('\n') || trace.is_empty(), "{trace:?}");
    trace
        .lines()
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(object)) => object,
            other => panic!("not a JSON object: {line:?}: {other:?}"),
        })
        .collect()
}

fn hex_decode(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// The bytes of one direction, put back together from the `hex` fields.
fn joined(lines: &[serde_json::Map<String, Value>], dir: &str) -> Vec<u8> {
    lines
        .iter()
        .filter(|l| l["dir"] == dir)
        .filter_map(|l| l.get("hex").and_then(Value::as_str))
        .flat_map(hex_decode)
        .collect()
}

/// A server that reads a request to its end (chunked or not: it waits for `end`) and
/// answers `reply`, then closes.
fn server(reply: &'static [u8], end: &'static [u8]) -> (String, thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/up/ñ?q=é", listener.local_addr().unwrap());
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        while !received.ends_with(end) {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
        let _ = stream.write_all(reply);
        let _ = stream.shutdown(Shutdown::Write);
        // Let the client read the reply before the socket goes.
        let _ = stream.read(&mut buf);
        received
    });
    (url, handle)
}

/// A reply with bytes that are not UTF-8 in its reason phrase, header values (one of them a
/// Location with a password, which the trace masks) and trailer, and control bytes in its
/// body (the parser refuses them in a head).
const HOSTILE: &[u8] = b"HTTP/1.1 200 \xff\xfeO\tK\x80\r\n\
X-Bin: \xc3(\xe2\x82 \t[31m \"q\" \\ \x80\r\n\
Location: http://user:pa\xffss@h\xc3\xa9st/p\xc0\r\n\
X-Utf8: caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80\r\n\
Transfer-Encoding: chunked\r\n\r\n\
5\r\n\x00\xff\r\n\x1b\r\n0\r\nX-T: \xfe\t\r\n\r\n";

#[test]
fn every_line_of_a_hostile_exchange_parses_and_holds_the_exact_bytes() {
    let (url, server) = server(HOSTILE, b"0\r\nX-Sum: \xc3\xa9\r\n\r\n");
    let trace = Shared::default();
    let body: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let mut response = Client::builder()
        .chunk_size(700)
        .build()
        .unwrap()
        .upload(&url)
        .header("X-Name", b"\xe9\xff caf\xc3\xa9 \x80")
        .header("Authorization", "Bearer s\u{e9}cret")
        .trailer("X-Sum", "\u{e9}")
        .trace(TraceWriter::new(trace.clone(), TraceFormat::Json))
        .send(&body[..])
        .unwrap();
    let mut got = Vec::new();
    response.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"\x00\xff\r\n\x1b");
    drop(response);
    let received = server.join().unwrap();
    let text = trace.text();
    let lines = parse_lines(&text);
    assert!(lines.len() > 10, "{text}");
    // The masked lines hide their bytes: the rest is there byte for byte.
    let masked: Vec<_> = lines.iter().filter(|l| l.contains_key("masked")).collect();
    assert_eq!(masked.len(), 2, "Authorization and the Location: {text}");
    assert!(masked.iter().all(|l| {
        let shown = l["masked"].as_str().unwrap();
        !shown.contains("s\u{e9}cret") && !shown.contains("pa\u{fffd}ss")
    }));
    let sent = joined(&lines, "send");
    let recv = joined(&lines, "recv");
    let masked_len = |dir: &str| -> u64 {
        masked
            .iter()
            .filter(|l| l["dir"] == dir)
            .map(|l| l["len"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(
        sent.len() as u64 + masked_len("send"),
        received.len() as u64
    );
    assert_eq!(recv.len() as u64 + masked_len("recv"), HOSTILE.len() as u64);
    assert!(received.ends_with(&sent[sent.len() - 20..]));
    assert!(HOSTILE.ends_with(&recv[recv.len() - 40..]));
    // The notes parse and say what they said.
    assert!(
        lines
            .iter()
            .filter_map(|l| l.get("note").and_then(Value::as_str))
            .any(|n| n.starts_with("connected to 127.0.0.1:")),
        "{text}"
    );
}

#[test]
fn a_failed_upload_traces_valid_json_too() {
    // The server closes without a word after the head: the upload fails.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/gone", listener.local_addr().unwrap());
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let _ = stream.read(&mut buf);
        let _ = stream.write_all(b"HTTP/1.1 2\xff0 \x01\r\n\r\n");
    });
    let trace = Shared::default();
    let result = Client::new()
        .upload(&url)
        .trace(TraceWriter::new(trace.clone(), TraceFormat::Json))
        .send(&b"data"[..]);
    assert!(result.is_err());
    server.join().unwrap();
    let lines = parse_lines(&trace.text());
    assert!(!lines.is_empty());
}

#[test]
fn the_cli_trace_of_an_upload_to_the_sink_parses_line_by_line() {
    let sink = chunkwire::sink::Sink::bind("127.0.0.1:0")
        .unwrap()
        .spawn()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("chunkwire-trace-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("body");
    std::fs::write(&file, vec![0xffu8; 100_000]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chunkwire"))
        .args([
            "upload",
            "-s",
            "--trace-json",
            "-",
            "-H",
            "X-Cafe: caf\u{e9}",
        ])
        .args([
            "-H",
            "X-Name: \u{e9}\u{65e5}",
            "--trailer",
            "X-T: \u{1F600}",
        ])
        .arg(sink.url("/p\u{e9}/x"))
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    // The trace and the response body (the sink's report) share standard output: every
    // line is JSON, the report's included.
    let lines = parse_lines(&stdout);
    let report = lines
        .iter()
        .find(|l| l.contains_key("framing"))
        .unwrap_or_else(|| panic!("no report in {stdout}"));
    assert_eq!(report["bytes"], 100_000);
    assert!(
        lines
            .iter()
            .any(|l| l.get("part").is_some_and(|p| p == "chunk data"))
    );
}

#[test]
fn the_sinks_report_parses_with_hostile_targets_and_trailers() {
    let sink = chunkwire::sink::Sink::bind("127.0.0.1:0")
        .unwrap()
        .spawn()
        .unwrap();
    let mut stream = TcpStream::connect(sink.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(
            b"POST /a\"b\\c%00\xc3\xa9\xff HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
              Connection: close\r\n\r\n3\r\nabc\r\n0\r\nX-\xc3\xa9: v\xff\xfe\t\"\\\x7f\xe6\x97\xa5\r\n\r\n",
        )
        .unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply);
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    let Value::Object(report) =
        serde_json::from_str::<Value>(body.trim_end()).unwrap_or_else(|e| panic!("{e}: {reply}"))
    else {
        panic!("{reply}")
    };
    // The sink refuses what it must (the non-token trailer name) with a JSON error, or
    // reports: either way it parses, and a report keeps the text as it was.
    if let Some(target) = report.get("target") {
        assert_eq!(target, "/a\"b\\c%00\u{e9}\u{fffd}");
        assert_eq!(report["bytes"], 3);
    } else {
        assert!(report["error"].is_string(), "{reply}");
    }
    let mut stream = TcpStream::connect(sink.addr()).unwrap();
    stream
        .write_all(
            b"PUT /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
              1\r\nz\r\n0\r\nX-T: v\xff\xfe\t\"\\\xe6\x97\xa5\r\n\r\n",
        )
        .unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply);
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    let report: Value =
        serde_json::from_str(body.trim_end()).unwrap_or_else(|e| panic!("{e}: {reply}"));
    assert_eq!(
        report["trailers"][0]["value"], "v\u{fffd}\u{fffd}\t\"\\\u{65e5}",
        "{reply}"
    );
}

/// A trace that goes nowhere, for the writer under test to wrap.
fn json_writer() -> (TraceWriter<Shared>, Shared) {
    let out = Shared::default();
    (TraceWriter::new(out.clone(), TraceFormat::Json), out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_note_is_one_json_line_with_its_text(text in any::<String>()) {
        let (mut trace, out) = json_writer();
        trace.note(Direction::Sent, &text);
        trace.into_inner();
        let lines = parse_lines(&out.text());
        prop_assert_eq!(lines.len(), 1);
        // A note is shown as given unless it holds a URL with a password (masked).
        if !text.contains("://") {
            prop_assert_eq!(lines[0]["note"].as_str(), Some(text.as_str()));
        }
    }

    #[test]
    fn any_field_line_bytes_make_valid_json(
        value in proptest::collection::vec(any::<u8>(), 0..80),
        name in prop::sample::select(vec!["Authorization", "Location", "X-Any", "Cookie"]),
        split in 0usize..100,
    ) {
        let (mut trace, out) = json_writer();
        let mut line = format!("{name}: ").into_bytes();
        line.extend_from_slice(&value);
        line.extend_from_slice(b"\r\n");
        let at = split.min(line.len());
        trace.bytes(Direction::Received, Part::Header, &line[..at]);
        trace.bytes(Direction::Received, Part::Header, &line[at..]);
        trace.bytes(Direction::Received, Part::EndOfHead, b"\r\n");
        trace.note(Direction::Received, &String::from_utf8_lossy(&value));
        trace.into_inner();
        let lines = parse_lines(&out.text());
        let shown: u64 = lines
            .iter()
            .filter_map(|l| l.get("len").and_then(Value::as_u64))
            .sum();
        prop_assert_eq!(shown, line.len() as u64 + 2);
    }
}
