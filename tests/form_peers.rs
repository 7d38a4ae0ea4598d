//! Forms sent with `chunkwire upload -F ...` as third-party multipart parsers decode them:
//! python-multipart (under Starlette and uvicorn), aiohttp's multipart reader and busboy
//! (see tests/support/form_peers.rs). Every scenario also runs with `curl -F`, which takes
//! the same arguments: that checks the peers and these tests against a client no one here
//! wrote, and shows where chunkwire and curl differ on purpose (a part read from standard
//! input: curl buffers it whole and sends a length, chunkwire streams it chunked).
//!
//! Needs python3 with the packages of tests/support/form_peers/requirements.txt and node
//! with busboy in tests/support/form_peers/node_modules; `.ci/run` installs both. A
//! missing peer fails the tests, saying what to install.
#![cfg(feature = "cli")]

use std::io::{ErrorKind, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use chunkwire::sink::{Framing, Sink};
use sha2::{Digest, Sha256};

#[path = "support/form_peers.rs"]
mod form_peers;
use form_peers::{Kind, PartReport, Peer, Report, peers};

/// The client under test: both take the same `-F` arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Curl,
    Chunkwire,
}

impl Tool {
    /// A command that sends `args` (options and `-F`s) to `url`.
    fn command(self, args: &[String], url: &str) -> Command {
        let mut command = match self {
            Tool::Curl => {
                let mut c = Command::new("curl");
                c.args(["-sS", "--max-time", "60"]);
                c
            }
            Tool::Chunkwire => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_chunkwire"));
                c.args(["upload", "-s", "--max-time", "60"]);
                c
            }
        };
        command.args(args).arg(url);
        command
    }

    /// Runs the command, feeding `stdin` (or nothing) to it; returns what it did.
    fn run(self, args: &[String], url: &str, stdin: Option<&[u8]>) -> Output {
        let mut command = self.command(args, url);
        command
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("could not run {self:?}: {e}"));
        let feeder = stdin.map(|data| {
            let data = data.to_vec();
            let mut pipe = child.stdin.take().unwrap();
            thread::spawn(move || {
                // The client may refuse the form before reading: a broken pipe is its answer.
                let _ = pipe.write_all(&data);
            })
        });
        let output = child.wait_with_output().unwrap();
        if let Some(feeder) = feeder {
            feeder.join().unwrap();
        }
        output
    }

    /// Sends the form to `url` and returns the peer's report; panics with the client's
    /// stderr if it failed, or with the parser's words if it refused the form.
    fn send(self, args: &[String], url: &str, stdin: Option<&[u8]>, peer: &Peer) -> Report {
        let output = self.run(args, url, stdin);
        assert!(
            output.status.success(),
            "{self:?} to {} failed ({}): {}\nthe peer's stderr: {}",
            peer.kind().name(),
            output.status,
            String::from_utf8_lossy(&output.stderr),
            peer.stderr()
        );
        Report::parse(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "{self:?} to {}: {e}\nthe peer's stderr: {}",
                peer.kind().name(),
                peer.stderr()
            )
        })
    }
}

/// Runs `scenario` with each client as its own test.
macro_rules! with_each_tool {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[test]
                fn curl() {
                    super::$scenario(super::Tool::Curl);
                }
                #[test]
                fn chunkwire() {
                    super::$scenario(super::Tool::Chunkwire);
                }
            }
        )*
    };
}

/// A folder of input files for one test, removed when dropped.
struct Files(PathBuf);

impl Files {
    fn new(test: &str) -> Files {
        let dir = std::env::temp_dir().join(format!(
            "chunkwire-form-peers-{}-{test}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Files(dir)
    }

    /// Writes `contents` as `name`; returns its path as a `-F` argument wants it.
    fn add(&self, name: &str, contents: &[u8]) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Bytes from a seeded xorshift: every size and seed gives different content, so a part
/// swapped, shifted or cut changes its hash.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `-F` followed by its argument, for each.
fn forms<S: AsRef<str>>(items: &[S]) -> Vec<String> {
    items
        .iter()
        .flat_map(|item| ["-F".to_owned(), item.as_ref().to_owned()])
        .collect()
}

/// The name or file name a parser reports for `sent`: browsers (the WHATWG rule) and
/// chunkwire write `"` as `%22`, CR as `%0D` and LF as `%0A` in the part header, and
/// none of these parsers percent-decodes, so that is what arrives; everything else,
/// semicolons, spaces and UTF-8, arrives as it was.
fn as_browsers_escape(sent: &str) -> String {
    sent.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Asserts a file part arrived: its file name, and content byte for byte (by hash).
fn assert_file(peer: Kind, part: &PartReport, filename: &str, content: &[u8]) {
    let who = format!("{}: part {:?}", peer.name(), part.name);
    assert_eq!(part.filename.as_deref(), Some(filename), "{who}: file name");
    assert_eq!(part.size, content.len() as u64, "{who}: size");
    assert_eq!(
        part.sha256.as_deref(),
        Some(sha256(content).as_str()),
        "{who}: content"
    );
}

/// Asserts a text field arrived with this value.
fn assert_field(peer: Kind, part: &PartReport, value: &str) {
    let who = format!("{}: field {:?}", peer.name(), part.name);
    assert_eq!(part.filename, None, "{who} came as a file");
    assert_eq!(part.value.as_deref(), Some(value), "{who}: value");
    // busboy names text/plain for a part that has no Content-Type; the others None.
    match peer {
        Kind::Busboy => assert_eq!(part.content_type.as_deref(), Some("text/plain"), "{who}"),
        _ => assert_eq!(part.content_type, None, "{who}"),
    }
}

/// Asserts the body had a Content-Length, and that it was the number of bytes sent.
fn assert_exact_length(peer: Kind, report: &Report) {
    assert_eq!(report.framing, "content-length", "{}", peer.name());
    assert_eq!(
        report.content_length,
        Some(report.body_bytes),
        "{}: the stated length is not what was sent",
        peer.name()
    );
}

fn assert_multipart(peer: Kind, report: &Report) {
    let content_type = report.content_type.as_deref().unwrap_or("");
    assert!(
        content_type.starts_with("multipart/form-data; boundary="),
        "{}: Content-Type {content_type:?}",
        peer.name()
    );
    assert_eq!(report.method, "POST", "{}: -F posts", peer.name());
}

with_each_tool!(
    files_and_fields_arrive_byte_for_byte,
    awkward_names_arrive_as_the_browser_rule_says,
    an_empty_file_part_arrives_empty,
    a_hundred_parts_arrive_in_order,
    a_part_from_stdin_arrives_whole,
    a_307_resends_the_whole_form,
    many_part_sizes_arrive_with_the_exact_length,
    the_sink_decodes_the_form,
);

fn files_and_fields_arrive_byte_for_byte(tool: Tool) {
    let files = Files::new(&format!("fields-{tool:?}"));
    let text = b"plain text, a line\n".repeat(3);
    let binary = noise(1, 300_000);
    let renamed = noise(2, 70_001);
    let note = "the field's value\nfrom a file\n";
    let text_path = files.add("notes.txt", &text);
    let binary_path = files.add("data.bin", &binary);
    let renamed_path = files.add("original.bin", &renamed);
    let note_path = files.add("note", note.as_bytes());
    let mut args = forms(&[
        "title=hello world".to_owned(),
        format!("text=@{text_path}"),
        format!("binary=@{binary_path}"),
        format!("renamed=@{renamed_path};filename=report.pdf;type=application/x-test"),
        format!("note=<{note_path}"),
    ]);
    args.extend([
        "--form-string".to_owned(),
        "raw=@not-a-file;type=x".to_owned(),
    ]);
    for peer in peers() {
        let kind = peer.kind();
        let report = tool.send(&args, &peer.upload_url(), None, peer);
        assert_multipart(kind, &report);
        assert_exact_length(kind, &report);
        let names: Vec<_> = report.parts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["title", "text", "binary", "renamed", "note", "raw"],
            "{}",
            kind.name()
        );
        assert_field(kind, report.part("title"), "hello world");
        assert_file(kind, report.part("text"), "notes.txt", &text);
        assert_eq!(
            report.part("text").content_type.as_deref(),
            Some("text/plain"),
            "{}: guessed from .txt",
            kind.name()
        );
        assert_file(kind, report.part("binary"), "data.bin", &binary);
        assert_eq!(
            report.part("binary").content_type.as_deref(),
            Some("application/octet-stream"),
            "{}",
            kind.name()
        );
        assert_file(kind, report.part("renamed"), "report.pdf", &renamed);
        assert_eq!(
            report.part("renamed").content_type.as_deref(),
            Some("application/x-test"),
            "{}: ;type= wins over the guess",
            kind.name()
        );
        assert_field(kind, report.part("note"), note);
        assert_field(kind, report.part("raw"), "@not-a-file;type=x");
    }
}

fn awkward_names_arrive_as_the_browser_rule_says(tool: Tool) {
    let files = Files::new(&format!("names-{tool:?}"));
    let content = noise(3, 5000);
    let path = files.add("plain.bin", &content);
    let field_name = "a \"quoted\"; name\r\nwith ü, 名前 and CR LF";
    let file_name = "q\"uo;te d\r\nü 名.txt";
    let file_field = "file \"of\"; ü";
    // curl's syntax: a quoted filename= takes `\"` for a quote, and ends at the closing
    // quote, so the semicolon inside is part of the name.
    let quoted_file_name = file_name.replace('"', "\\\"");
    // A file whose own name is awkward, its name taken from the path: quoted in curl's
    // syntax too, since a `;` would end the path.
    let on_disk = "dis\"k; na me ü.bin";
    let disk_content = noise(33, 777);
    let disk_path = files.add(on_disk, &disk_content).replace('"', "\\\"");
    let args = forms(&[
        format!("{field_name}=value"),
        format!("{file_field}=@{path};filename=\"{quoted_file_name}\""),
        format!("disk=@\"{disk_path}\""),
    ]);
    for peer in peers() {
        let kind = peer.kind();
        let report = tool.send(&args, &peer.upload_url(), None, peer);
        assert_exact_length(kind, &report);
        assert_eq!(report.parts.len(), 3, "{}: {:?}", kind.name(), report.parts);
        let field = &report.parts[0];
        assert_eq!(
            field.name,
            as_browsers_escape(field_name),
            "{}",
            kind.name()
        );
        assert_field(kind, field, "value");
        let file = &report.parts[1];
        assert_eq!(file.name, as_browsers_escape(file_field), "{}", kind.name());
        assert_file(kind, file, &as_browsers_escape(file_name), &content);
        assert_file(
            kind,
            &report.parts[2],
            &as_browsers_escape(on_disk),
            &disk_content,
        );
    }
}

fn an_empty_file_part_arrives_empty(tool: Tool) {
    let files = Files::new(&format!("empty-{tool:?}"));
    let empty = files.add("empty.bin", b"");
    let after = noise(4, 1000);
    let after_path = files.add("after.bin", &after);
    let args = forms(&[
        format!("empty=@{empty}"),
        format!("after=@{after_path}"),
        "last=field".to_owned(),
    ]);
    for peer in peers() {
        let kind = peer.kind();
        let report = tool.send(&args, &peer.upload_url(), None, peer);
        assert_exact_length(kind, &report);
        assert_eq!(report.parts.len(), 3, "{}: {:?}", kind.name(), report.parts);
        assert_file(kind, &report.parts[0], "empty.bin", b"");
        assert_file(kind, &report.parts[1], "after.bin", &after);
        assert_field(kind, &report.parts[2], "field");
    }
}

fn a_hundred_parts_arrive_in_order(tool: Tool) {
    let files = Files::new(&format!("hundred-{tool:?}"));
    let mut items = Vec::new();
    let mut contents = Vec::new();
    for i in 0..100usize {
        if i % 2 == 0 {
            // Sizes from empty to a few buffers' worth.
            let content = noise(100 + i as u64, (i * i * 37) % 200_000);
            let path = files.add(&format!("part{i}.bin"), &content);
            items.push(format!("file{i}=@{path}"));
            contents.push(Some(content));
        } else {
            items.push(format!("field{i}=value number {i}"));
            contents.push(None);
        }
    }
    let args = forms(&items);
    for peer in peers() {
        let kind = peer.kind();
        let report = tool.send(&args, &peer.upload_url(), None, peer);
        assert_exact_length(kind, &report);
        assert_eq!(report.parts.len(), 100, "{}", kind.name());
        for (i, (part, content)) in report.parts.iter().zip(&contents).enumerate() {
            match content {
                Some(content) => {
                    assert_eq!(part.name, format!("file{i}"), "{}", kind.name());
                    assert_file(kind, part, &format!("part{i}.bin"), content);
                }
                None => {
                    assert_eq!(part.name, format!("field{i}"), "{}", kind.name());
                    assert_field(kind, part, &format!("value number {i}"));
                }
            }
        }
    }
}

/// `-F f=@-`: standard input as a file part of unknown size. chunkwire streams it in a
/// chunked body; curl reads it all into memory first and sends a length.
fn a_part_from_stdin_arrives_whole(tool: Tool) {
    let data = noise(5, 1_500_000);
    let args = forms(&["before=1", "f=@-", "after=2"]);
    for peer in peers() {
        let kind = peer.kind();
        let report = tool.send(&args, &peer.upload_url(), Some(&data), peer);
        match tool {
            Tool::Chunkwire => {
                assert_eq!(report.framing, "chunked", "{}", kind.name());
                assert_eq!(report.content_length, None, "{}", kind.name());
            }
            Tool::Curl => assert_exact_length(kind, &report),
        }
        assert_eq!(report.parts.len(), 3, "{}: {:?}", kind.name(), report.parts);
        assert_field(kind, &report.parts[0], "1");
        let part = &report.parts[1];
        assert_eq!(part.name, "f", "{}", kind.name());
        assert!(part.filename.is_some(), "{}: {part:?}", kind.name());
        assert_eq!(part.size, data.len() as u64, "{}", kind.name());
        assert_eq!(part.sha256, Some(sha256(&data)), "{}", kind.name());
        assert_field(kind, &report.parts[2], "2");
    }
}

/// The peers' `/redirect` answers 307 without reading the body; `-L` sends the form again,
/// whole, to `/upload`. With a small form the whole body is out before the 307; with a
/// large one the 307 comes while it is still being sent.
fn a_307_resends_the_whole_form(tool: Tool) {
    let files = Files::new(&format!("redirect-{tool:?}"));
    for len in [2000, 3_000_000] {
        let content = noise(6 + len as u64, len);
        let path = files.add(&format!("f{len}.bin"), &content);
        let mut args = vec!["-L".to_owned()];
        args.extend(forms(&[
            "first=before".to_owned(),
            format!("file=@{path}"),
            "last=after".to_owned(),
        ]));
        for peer in peers() {
            let kind = peer.kind();
            let report = tool.send(&args, &peer.redirect_url(), None, peer);
            assert_multipart(kind, &report);
            assert_exact_length(kind, &report);
            assert_eq!(report.parts.len(), 3, "{}: {:?}", kind.name(), report.parts);
            assert_field(kind, &report.parts[0], "before");
            assert_file(kind, &report.parts[1], &format!("f{len}.bin"), &content);
            assert_field(kind, &report.parts[2], "after");
        }
    }
}

/// Forms of one to four file parts whose sizes sit around the usual buffer sizes (and
/// zero): each body arrives with a Content-Length that is exactly what was sent, and every
/// part intact.
fn many_part_sizes_arrive_with_the_exact_length(tool: Tool) {
    let files = Files::new(&format!("sizes-{tool:?}"));
    let sizes = [0usize, 1, 16_383, 16_384, 16_385, 65_536, 65_537, 262_145];
    let combos: Vec<Vec<usize>> = vec![
        vec![sizes[0]],
        vec![sizes[1], sizes[0]],
        vec![sizes[2], sizes[3], sizes[4]],
        vec![sizes[5], sizes[1], sizes[6], sizes[0]],
        vec![sizes[7], sizes[3]],
        vec![sizes[4], sizes[7], sizes[2], sizes[5]],
    ];
    for (c, combo) in combos.iter().enumerate() {
        let mut items = Vec::new();
        let mut contents = Vec::new();
        for (i, &len) in combo.iter().enumerate() {
            let content = noise((c * 10 + i) as u64, len);
            let path = files.add(&format!("c{c}p{i}.bin"), &content);
            items.push(format!("p{i}=@{path}"));
            contents.push(content);
        }
        let args = forms(&items);
        for peer in peers() {
            let kind = peer.kind();
            let report = tool.send(&args, &peer.upload_url(), None, peer);
            assert_exact_length(kind, &report);
            assert_eq!(report.parts.len(), combo.len(), "{} {combo:?}", kind.name());
            for (i, (part, content)) in report.parts.iter().zip(&contents).enumerate() {
                assert_file(kind, part, &format!("c{c}p{i}.bin"), content);
            }
        }
    }
}

/// A listener that records whether anything connected, for a command that must fail
/// before it connects.
fn untouched_listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/upload", listener.local_addr().unwrap());
    (listener, url)
}

fn assert_never_connected(listener: &TcpListener) {
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Ok((_, from)) => panic!("the client connected (from {from}) although it had to refuse"),
        Err(e) => panic!("accept: {e}"),
    }
}

/// `--content-length` requires a length; a part read from standard input has none, so
/// the form is refused before anything is sent, with an error naming the part.
#[test]
fn a_required_length_with_a_stdin_part_is_refused_before_connecting() {
    let files = Files::new("required-length");
    let sized = files.add("sized.bin", &noise(7, 1000));
    let (listener, url) = untouched_listener();
    let mut args = vec!["--content-length".to_owned()];
    args.extend(forms(&[
        format!("sized=@{sized}"),
        "streamed=@-".to_owned(),
    ]));
    let output = Tool::Chunkwire.run(&args, &url, Some(b"some input of unknown size"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "it succeeded: {stderr}");
    assert!(
        stderr.contains("streamed"),
        "the error does not name the part: {stderr}"
    );
    assert!(output.stdout.is_empty(), "{:?}", output.stdout);
    // A connect the client made would be in the listener's queue by now.
    thread::sleep(Duration::from_millis(100));
    assert_never_connected(&listener);
}

/// The peers themselves: each one is up, and a form the harness checks against curl comes
/// back with the framing and length curl sent (`--trace-ascii` is curl's own account).
#[test]
fn peers_report_the_framing_curl_sent() {
    let files = Files::new("framing");
    let content = noise(8, 100_000);
    let path = files.add("f.bin", &content);
    for peer in peers() {
        let kind = peer.kind();
        let trace = files.0.join(format!("trace-{}", kind.name()));
        let mut args = vec![
            "--trace-ascii".to_owned(),
            trace.to_str().unwrap().to_owned(),
        ];
        args.extend(forms(&[format!("f=@{path}")]));
        let report = Tool::Curl.send(&args, &peer.upload_url(), None, peer);
        let sent = content_length_in_trace(&trace);
        assert_eq!(report.content_length, Some(sent), "{}", kind.name());
        assert_exact_length(kind, &report);
        assert_file(kind, &report.parts[0], "f.bin", &content);

        let mut chunked = vec!["-H".to_owned(), "Transfer-Encoding: chunked".to_owned()];
        chunked.extend(forms(&[format!("f=@{path}")]));
        let report = Tool::Curl.send(&chunked, &peer.upload_url(), None, peer);
        assert_eq!(report.framing, "chunked", "{}", kind.name());
        assert_eq!(report.body_bytes, sent, "{}", kind.name());
        assert_file(kind, &report.parts[0], "f.bin", &content);
    }
}

fn content_length_in_trace(trace: &Path) -> u64 {
    let text = std::fs::read_to_string(trace).unwrap();
    text.lines()
        .find_map(|line| line.split_once("Content-Length: ").map(|(_, n)| n.trim()))
        .unwrap_or_else(|| panic!("no Content-Length in curl's trace:\n{text}"))
        .parse()
        .unwrap()
}

/// The sink's own multipart decoder (`chunkwire sink`), checked against what curl sends and
/// what chunkwire sends: part names and file names as the parsers above decode them, sizes
/// and CRC-32s, with a Content-Length and chunked (curl told so by a header; chunkwire by a
/// part from standard input).
fn the_sink_decodes_the_form(tool: Tool) {
    let files = Files::new(&format!("sink-{tool:?}"));
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    // Content full of near-delimiters: CRs, LFs and dashes.
    let mut tricky = b"\r\n--\r\n-\r\r\n--x".repeat(5000);
    tricky.extend_from_slice(&noise(9, 300_000));
    let tricky_path = files.add("tricky.bin", &tricky);
    let empty_path = files.add("empty.bin", b"");
    let field_name = "a \"quoted\"; name\r\nwith ü";
    for chunked in [false, true] {
        let (file_arg, stdin) = match (chunked, tool) {
            (true, Tool::Chunkwire) => ("f=@-;filename=tricky.bin".to_owned(), Some(&tricky[..])),
            _ => (format!("f=@{tricky_path}"), None),
        };
        let mut args = forms(&[
            format!("{field_name}=value"),
            format!("{file_arg};type=application/x-test"),
            format!("e=@{empty_path}"),
        ]);
        if chunked && tool == Tool::Curl {
            args.extend(["-H".to_owned(), "Transfer-Encoding: chunked".to_owned()]);
        }
        let output = tool.run(&args, &sink.url("/form"), stdin);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report = sink.next_report(Duration::from_secs(10)).expect("a report");
        let expected_framing = if chunked {
            Framing::Chunked
        } else {
            Framing::ContentLength
        };
        assert_eq!(report.framing, expected_framing);
        let form = report.form.expect("a form report");
        assert_eq!(form.error, None, "chunked {chunked}");
        assert!(form.complete, "chunked {chunked}");
        assert_eq!(form.parts.len(), 3, "chunked {chunked}");
        let [field, file, empty] = &form.parts[..] else {
            unreachable!()
        };
        assert_eq!(field.name, as_browsers_escape(field_name));
        assert_eq!(field.filename, None);
        assert_eq!(field.crc32, crc32fast::hash(b"value"));
        assert_eq!(file.filename.as_deref(), Some("tricky.bin"));
        assert_eq!(file.content_type.as_deref(), Some("application/x-test"));
        assert_eq!(file.bytes, tricky.len() as u64, "chunked {chunked}");
        assert_eq!(file.crc32, crc32fast::hash(&tricky), "chunked {chunked}");
        assert_eq!(empty.bytes, 0);
        assert_eq!(empty.filename.as_deref(), Some("empty.bin"));
    }
}

/// A form with a part from standard input cannot be sent again: after a 307 chunkwire
/// fails with the clear error of a plain stream (curl's exit code 65, "rewind failed"),
/// never a success for a form that did not arrive.
#[test]
fn a_307_to_a_form_with_a_stdin_part_fails_clearly() {
    let args: Vec<String> = ["-L"]
        .iter()
        .map(|s| s.to_string())
        .chain(forms(&["a=1", "f=@-"]))
        .collect();
    for peer in peers() {
        let output = Tool::Chunkwire.run(&args, &peer.redirect_url(), Some(&noise(10, 100_000)));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(65),
            "{}: {stderr}",
            peer.kind().name()
        );
        assert!(
            stderr.contains("cannot be sent again"),
            "{}: {stderr}",
            peer.kind().name()
        );
        assert!(output.stdout.is_empty(), "{}", peer.kind().name());
    }
}

/// `--content-length` with a form whose every part is sized: it goes with its exact length,
/// and `-X PUT` sends it with that method.
#[test]
fn a_required_length_is_met_by_a_sized_form() {
    let files = Files::new("sized-required");
    let content = noise(11, 123_457);
    let path = files.add("sized.bin", &content);
    let mut args = vec![
        "--content-length".to_owned(),
        "-X".to_owned(),
        "PUT".to_owned(),
    ];
    args.extend(forms(&[format!("f=@{path}"), "t=text".to_owned()]));
    for peer in peers() {
        let kind = peer.kind();
        let report = Tool::Chunkwire.send(&args, &peer.upload_url(), None, peer);
        assert_eq!(report.method, "PUT", "{}", kind.name());
        assert_exact_length(kind, &report);
        assert_file(kind, &report.parts[0], "sized.bin", &content);
        assert_field(kind, &report.parts[1], "text");
    }
}

/// `-F f=@-` with standard input redirected from a file: chunkwire takes it as a sized part
/// (as curl, which reads it all, does), so the form goes with its exact length.
#[test]
fn a_part_from_stdin_redirected_from_a_file_goes_with_its_length() {
    let files = Files::new("stdin-file");
    let data = noise(12, 654_321);
    let path = files.add("input.bin", &data);
    let args = forms(&["f=@-", "t=after"]);
    for tool in [Tool::Curl, Tool::Chunkwire] {
        for peer in peers() {
            let kind = peer.kind();
            let output = tool
                .command(&args, &peer.upload_url())
                .stdin(std::fs::File::open(&path).unwrap())
                .stderr(Stdio::piped())
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{tool:?} to {}: {}",
                kind.name(),
                String::from_utf8_lossy(&output.stderr)
            );
            let report = Report::parse(&output.stdout).unwrap();
            assert_exact_length(kind, &report);
            let part = &report.parts[0];
            assert_eq!(part.size, data.len() as u64, "{tool:?} to {}", kind.name());
            assert_eq!(
                part.sha256,
                Some(sha256(&data)),
                "{tool:?} to {}",
                kind.name()
            );
            assert_field(kind, &report.parts[1], "after");
        }
    }
}
