//! `chunkwire walkthrough`: the wire walkthrough for learners (docs/wire-walkthrough.md),
//! made by running each exchange for real. It starts a loopback sink, makes the sample files
//! with the shell commands the document shows, runs each `chunkwire upload` command the
//! document shows (this same program, as a child process) and puts its `--trace-ascii`
//! output under it. Only what differs from run to run is rewritten: the port (shown as
//! 18081), the time column (left out), the random part of the form boundary, and, after an
//! early answer, the number of chunks that left before chunkwire read it.
//! `tests/walkthrough.rs` runs it again and compares with the checked-in document.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use chunkwire::sink::Sink;

use super::args::WalkthroughArgs;

/// The port the document shows; the sink listens on a free port and the traces are
/// rewritten to this one.
pub const SHOWN_PORT: u16 = 18081;

/// The sink's body limit in the document (`--max-body 1k`): small uploads pass, the large
/// file is refused with a 413.
const SINK_MAX_BODY: u64 = 1024;

/// The command line of the sink the exchanges run against.
const SINK_COMMAND: &str = "chunkwire sink --listen 127.0.0.1:18081 --max-body 1k";

/// Shell commands that make the sample files, run with `sh -c` in a scratch directory.
const SETUP: &[&str] = &[
    "printf 'hello world' > hello.txt",
    "printf 'name,count\\napples,3\\npears,5\\n' > fruit.csv",
    "head -c 4194304 /dev/zero | tr '\\0' a > big.bin",
];

/// The proxy variables chunkwire reads, as curl does: the exchanges run without them, so
/// that the uploads go to the loopback sink directly whatever the environment says.
const PROXY_VARIABLES: &[&str] = &[
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// Replaces the port of the URLs in `args`.
const PORT: &str = "PORT";

/// What the document does to a trace beyond the port, the times and the boundary.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cut {
    None,
    /// The chunks after the first one, up to the first received line, are one line: how
    /// many leave before an early answer is read depends on timing.
    ChunksAfterTheFirst,
}

/// One exchange of the walkthrough.
struct Exchange {
    /// The capture file's name, without `.pcapng`.
    name: &'static str,
    title: &'static str,
    /// Markdown before the command: what happens and why.
    intro: &'static str,
    /// The arguments after `chunkwire`; `PORT` stands for the sink's port.
    args: &'static [&'static str],
    cut: Cut,
    /// Text the shown trace must hold (and `absent`, must not), because the explanation
    /// around it says so: generation fails rather than print a walkthrough that is untrue.
    present: &'static [&'static str],
    absent: &'static [&'static str],
    /// Markdown after the trace: what to look at.
    notes: &'static str,
}

const EXCHANGES: &[Exchange] = &[
    Exchange {
        name: "chunked",
        title: "A chunked upload with a trailer",
        intro: "\
The 11-byte file `hello.txt` goes in 4-byte chunks, with one trailer field. chunkwire does
not say how long the body is: `Transfer-Encoding: chunked` (RFC 9112 section 6.1) lets it
start sending before it knows, and each chunk states its own size (section 7.1). This is the
exchange README.md walks through line by line.",
        args: &[
            "upload",
            "--chunk-size",
            "4",
            "--trailer",
            "X-Demo: done",
            "--trace-ascii",
            "-",
            "-o",
            "/dev/null",
            "http://127.0.0.1:PORT/up",
            "hello.txt",
        ],
        cut: Cut::None,
        present: &[
            "Transfer-Encoding: chunked",
            "Trailer: X-Demo",
            "chunk size (4)       4\\r\\n",
            "chunk size (3)       3\\r\\n",
            "last chunk           0\\r\\n",
            "trailer              X-Demo: done\\r\\n",
            "HTTP/1.1 200 OK",
        ],
        absent: &["Content-Length: 11"],
        notes: "\
- Each chunk is a **chunk size** line in hex, the **chunk data**, and a **chunk end** CRLF.
  The last read of the file was short, so the last data chunk is `3`.
- The **last chunk** (`0`) ends the data; the **trailer** lines follow it (section 7.1.2),
  announced in the head by `Trailer: X-Demo` (RFC 9110 section 6.6.2), and an empty line
  (**end of body**) ends the message.
- The response is framed by `Content-Length` (RFC 9112 section 6.3): the sink's JSON report
  of what arrived (bytes, chunks, CRC-32, trailers).",
    },
    Exchange {
        name: "continue",
        title: "Expect: 100-continue, and the server says go",
        intro: "\
`--expect-continue` sends `Expect: 100-continue` (RFC 9110 section 10.1.1) and holds the
body back until the server answers `100 Continue` (section 15.2.1): the server can refuse an
upload from its head alone, before a byte of the body has been sent. Here the body is 11
bytes and the sink's limit is 1 KiB, so the sink says go. With `--content-length` the head
states the size (RFC 9112 section 6.2), which is what lets a server judge it.",
        args: &[
            "upload",
            "--content-length",
            "--expect-continue",
            "--trace-ascii",
            "-",
            "-o",
            "/dev/null",
            "http://127.0.0.1:PORT/small",
            "hello.txt",
        ],
        cut: Cut::None,
        present: &[
            "Expect: 100-continue",
            "Content-Length: 11",
            "interim status line  HTTP/1.1 100 Continue",
            "body                 hello world (11 bytes)",
            "HTTP/1.1 200 OK",
        ],
        absent: &["chunk size"],
        notes: "\
- Nothing is sent after the head until the **interim status line** `HTTP/1.1 100
  Continue` and its empty line arrive: an interim (1xx) response has no body
  and is followed by the final one (RFC 9110 section 15.2).
- Then the **body** goes, as raw bytes (no chunk framing with Content-Length), and the final
  `200 OK` follows. The received offsets count both responses: the final status line starts
  at 25, after the 25 bytes of the 100.
- A server that never answers the expectation only costs time: after `--expect100-timeout`
  (1 second by default) the body goes anyway, as section 10.1.1 asks.",
    },
    Exchange {
        name: "refused",
        title: "Expect: 100-continue, and the server refuses",
        intro: "\
The same request for `big.bin`, 4 MiB, over the sink's limit. The sink answers with a final
status instead of the 100: `413 Content Too Large` (RFC 9110 section 15.5.14), and
`Connection: close`. A server may answer an expectation with any final status (section
10.1.1), and the client then must not send the body: not one body byte goes on the wire.",
        args: &[
            "upload",
            "--content-length",
            "--expect-continue",
            "--trace-ascii",
            "-",
            "-o",
            "/dev/null",
            "http://127.0.0.1:PORT/big",
            "big.bin",
        ],
        cut: Cut::None,
        present: &[
            "Expect: 100-continue",
            "Content-Length: 4194304",
            "status line          HTTP/1.1 413 Content Too Large",
            "Connection: close",
        ],
        absent: &["> body", "interim status line", "HTTP/1.1 200 OK"],
        notes: "\
- The sent side ends with the head: 4 MiB that would have been refused stayed on the disk.
  Without the expectation, the body would have been on its way while the server decided.
- `Connection: close`: the sink will read no more requests on this connection. A server
  that answers before it has read the body says whether it will close the connection or
  go on reading (RFC 9110 section 10.1.1); closing is the simpler way out.
- chunkwire returns the 413 as the response, and `upload_complete()` is false (in the
  library); the command exits 0 like curl, or 22 with `-f`.",
    },
    Exchange {
        name: "early-413",
        title: "An early 413 while the body is on its way",
        intro: "\
Without `Expect`, the body follows the head at once, chunked. The sink counts the body as it
arrives and answers `413 Content Too Large` as soon as it passes 1 KiB, in the middle of the
upload. A client sending a body should watch for a response while it sends, and stop when
the server shows it does not want the rest (RFC 9112 section 9.5): chunkwire keeps reading
the socket while it writes, so it stops after the bytes already in flight, instead of
sending all 4 MiB to a server that has stopped listening.",
        args: &[
            "upload",
            "--chunk-size",
            "1k",
            "--trace-ascii",
            "-",
            "-o",
            "/dev/null",
            "http://127.0.0.1:PORT/early",
            "big.bin",
        ],
        cut: Cut::ChunksAfterTheFirst,
        present: &[
            "Transfer-Encoding: chunked",
            "chunk size (1024)    400\\r\\n",
            "status line          HTTP/1.1 413 Content Too Large",
            "Connection: close",
        ],
        absent: &["last chunk", "HTTP/1.1 200 OK"],
        notes: "\
- The sink answers within the second chunk, as soon as the body passes 1,024 bytes. How
  many chunks leave before chunkwire reads the answer depends on timing (the sink and the
  client run at once, and the socket buffers hold many chunks), so the walkthrough folds
  the chunks after the first into one line. chunkwire looks for a response at least every 16
  chunks it writes, and here it stopped long before the 4,096 chunks of the file.
- There is no **last chunk**: the body is cut off, and the connection is closed, since
  nothing can follow an unfinished chunked body on it. The sink reads and drops what is
  still in flight for a moment before it closes, so its 413 is not lost to a reset (a
  \"lingering close\", RFC 9112 section 9.6).",
    },
    Exchange {
        name: "checksum",
        title: "A checksum in a trailer",
        intro: "\
A streaming upload cannot put a checksum of its body in the head: the body has not been
read yet. `--checksum sha256` computes it while the body streams and sends it after the last
chunk, as a `Content-Digest` trailer field (RFC 9530; trailers: RFC 9112 section 7.1.2, RFC
9110 section 6.5). The value is the SHA-256 of the body bytes, in base64, in the
byte-sequence form `:...:` of structured fields (RFC 9651).",
        args: &[
            "upload",
            "--checksum",
            "sha256",
            "--trace-ascii",
            "-",
            "-o",
            "/dev/null",
            "http://127.0.0.1:PORT/sum",
            "hello.txt",
        ],
        cut: Cut::None,
        present: &[
            "Trailer: Content-Digest",
            "trailer              Content-Digest: sha-256=:uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=:\\r\\n",
            "HTTP/1.1 200 OK",
        ],
        absent: &[],
        notes: "\
- The head announces the trailer (`Trailer: Content-Digest`), so a receiver knows to keep the
  field that comes after the body.
- Check the value yourself: `printf 'hello world' | openssl dgst -sha256 -binary | base64`
  prints `uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=`.
- A recipient that removes the chunked coding may keep or discard trailer fields (RFC 9112
  section 7.1.2); the sink keeps them and reports them, so its response body holds the
  digest it received.",
    },
    Exchange {
        name: "form",
        title: "A multipart form",
        intro: "\
`-F` sends a `multipart/form-data` body (RFC 7578), as a browser's form upload does: a text
field and a file part, each after a delimiter line made of `--` and the boundary (RFC 2046
section 5.1.1), and the close delimiter `--boundary--` at the end. Every size is known here
(the text, the file, the delimiters and part headers chunkwire writes), so the form goes with
a `Content-Length`, not chunked.",
        args: &[
            "upload",
            "-F",
            "title=Fruit",
            "-F",
            "list=@fruit.csv",
            "--trace-ascii",
            "-",
            "-o",
            "/dev/null",
            "http://127.0.0.1:PORT/form",
        ],
        cut: Cut::None,
        present: &[
            "POST /form HTTP/1.1",
            "Content-Type: multipart/form-data; boundary=----chunkwire-",
            "form part header     Content-Disposition: form-data; name=\\\"title\\\"",
            "filename=\\\"fruit.csv\\\"\\r\\nContent-Type: text/csv",
            "--\\r\\n",
            "HTTP/1.1 200 OK",
        ],
        absent: &["Transfer-Encoding"],
        notes: "\
- The boundary is `----chunkwire-` and 32 random letters and digits, new for every form, so
  that it cannot turn up in a file by chance; the walkthrough shows the random part as
  `x`s. Each **form boundary** line after the first starts with the CRLF that ends the
  part before it: that CRLF belongs to the delimiter, not to the data.
- The **form part header** says the part's name, the file name, and a type guessed from the
  extension (`text/csv`); then comes the **form part data**, the file as it is.
- The method is `POST` unless `-X` says otherwise, as with curl. A part of unknown size (a
  pipe, `-F f=@-`) makes the form chunked, with form parts cut across chunks.",
    },
];

/// Runs the exchanges and writes the document.
pub fn run(args: &WalkthroughArgs) -> Result<ExitCode, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let dir = ScratchDir::new()?;
    for command in SETUP {
        let status = Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(&dir.0)
            .status()
            .map_err(|e| format!("cannot run sh for {command:?}: {e}"))?;
        if !status.success() {
            return Err(format!("{command:?} failed: {status}"));
        }
    }
    let sink = start_sink()?;
    let port = sink.addr().port();
    let mut doc = String::new();
    write_intro(&mut doc);
    for (i, exchange) in EXCHANGES.iter().enumerate() {
        let trace = run_exchange(&exe, &dir.0, port, exchange)?;
        write_exchange(&mut doc, i + 1, exchange, &trace);
    }
    match &args.output {
        Some(path) => std::fs::write(path, doc)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(doc.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| format!("cannot write to standard output: {e}"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A sink on a free port with as many digits as the port shown, so that the offsets after
/// the `Host` header are the ones the document shows.
fn start_sink() -> Result<chunkwire::sink::RunningSink, String> {
    let digits = SHOWN_PORT.to_string().len();
    for _ in 0..50 {
        let sink = Sink::bind("127.0.0.1:0")
            .map_err(|e| format!("cannot start the loopback sink: {e}"))?;
        let port = sink.local_addr().map_err(|e| e.to_string())?.port();
        if port.to_string().len() == digits {
            return sink
                .max_body(SINK_MAX_BODY)
                .spawn()
                .map_err(|e| format!("cannot start the loopback sink: {e}"));
        }
    }
    Err(format!("no free port with {digits} digits for the sink"))
}

/// A directory for the sample files, removed at the end.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Result<Self, String> {
        let path = std::env::temp_dir().join(format!(
            "chunkwire-walkthrough-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(ScratchDir(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs one exchange's command against the sink on `port`; its trace as the document shows it.
fn run_exchange(exe: &Path, dir: &Path, port: u16, exchange: &Exchange) -> Result<String, String> {
    let args: Vec<String> = exchange
        .args
        .iter()
        .map(|arg| arg.replace(PORT, &port.to_string()))
        .collect();
    let mut command = Command::new(exe);
    for name in PROXY_VARIABLES {
        command.env_remove(name);
    }
    let output = command
        .args(&args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    let shown = shown_command(exchange.args);
    if !output.status.success() {
        return Err(format!(
            "`{shown}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        ));
    }
    let printed = String::from_utf8(output.stdout)
        .map_err(|_| format!("`{shown}` printed a trace that is not UTF-8"))?;
    let trace = normalise(&printed, port, exchange.cut);
    for text in exchange.present {
        if !trace.contains(text) {
            return Err(format!(
                "the trace of `{shown}` lacks {text:?}, which the walkthrough explains:\n{trace}"
            ));
        }
    }
    for text in exchange.absent {
        if trace.contains(text) {
            return Err(format!(
                "the trace of `{shown}` holds {text:?}, which the walkthrough says is not there:\n{trace}"
            ));
        }
    }
    Ok(trace)
}

/// The trace without its time column, with the shown port, the boundary's random part as
/// `x`s, and the cut `cut` asks for.
fn normalise(trace: &str, port: u16, cut: Cut) -> String {
    let actual = format!("127.0.0.1:{port}");
    let shown = format!("127.0.0.1:{SHOWN_PORT}");
    let boundary = random_boundary_part(trace);
    let mut out = String::new();
    let mut state = CutState::BeforeFirstChunkEnd;
    for line in trace.lines() {
        let line = without_time(line);
        if cut == Cut::ChunksAfterTheFirst {
            match state {
                CutState::BeforeFirstChunkEnd if line.contains(" chunk end ") => {
                    state = CutState::Folding;
                }
                CutState::Folding if line.starts_with('>') => continue,
                CutState::Folding => {
                    out.push_str(
                        ">            (more chunks: as many as left before the answer was read)\n",
                    );
                    state = CutState::Done;
                }
                _ => {}
            }
        }
        let mut line = line.replace(&actual, &shown);
        if let Some(random) = &boundary {
            line = line.replace(random.as_str(), &"x".repeat(random.len()));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[derive(Clone, Copy)]
enum CutState {
    BeforeFirstChunkEnd,
    Folding,
    Done,
}

/// A `--trace-ascii` line without its leading time column (`  0.000190 `).
fn without_time(line: &str) -> &str {
    match line.split_at_checked(11) {
        Some((time, rest)) if time.trim().parse::<f64>().is_ok() => rest,
        _ => line,
    }
}

/// The random part of a chunkwire form boundary in the trace's Content-Type, if any.
fn random_boundary_part(trace: &str) -> Option<String> {
    const PREFIX: &str = "boundary=----chunkwire-";
    let start = trace.find(PREFIX)? + PREFIX.len();
    let random: String = trace[start..]
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    (!random.is_empty()).then_some(random)
}

/// `args` as a shell command line, with the shown port.
fn shown_command(args: &[&str]) -> String {
    let mut line = String::from("chunkwire");
    for arg in args {
        line.push(' ');
        line.push_str(&shell_quoted(&arg.replace(PORT, &SHOWN_PORT.to_string())));
    }
    line
}

/// `arg` as the shell reads it: as it is when it is plain, else in single quotes.
fn shell_quoted(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:=@,+-%".contains(&b));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// The capture command of an exchange: its command with the labelled trace swapped for a
/// pcapng capture.
fn capture_command(exchange: &Exchange, file: &str) -> String {
    let mut args: Vec<&str> = Vec::with_capacity(exchange.args.len());
    let mut given = exchange.args.iter();
    while let Some(&arg) = given.next() {
        if arg == "--trace-ascii" {
            given.next();
            args.push("--trace-pcap");
            args.push(file);
        } else {
            args.push(arg);
        }
    }
    shown_command(&args)
}

fn write_intro(doc: &mut String) {
    let setup = SETUP.join("\n");
    let _ = write!(
        doc,
        "\
<!-- Generated by `chunkwire walkthrough -o docs/wire-walkthrough.md`; do not edit by hand.
     tests/walkthrough.rs runs it again and fails when this file differs. -->

# A walk through the wire

What an HTTP/1.1 upload looks like byte by byte, for a few exchanges worth knowing: a
chunked upload, `Expect: 100-continue` answered and refused, an early `413`, a checksum in a
trailer, and a multipart form. Every trace below is what chunkwire printed for the command
above it, run by `chunkwire walkthrough` against a loopback sink; `tests/walkthrough.rs`
runs them all again and checks that this page is still what the tool prints.

## Setting up

A sink to upload to, in a terminal of its own; `--max-body 1k` makes it answer `413 Content
Too Large` to a body over 1 KiB, as a server with an upload limit does:

```sh
{SINK_COMMAND}
```

(With `--trace-ascii -` as well, the sink prints each exchange from the receiving side.)
The sample files, in a scratch directory:

```sh
{setup}
```

## Reading a trace

`--trace-ascii -` prints one line for each part of each message, in the order the bytes went:
`>` sent, `<` received, then the offset of the first byte in that direction, the part of the
message it is, and the bytes (CR and LF as `\\r` and `\\n`; payload past 64 bytes is
summarised). Lines with `*` are notes, not bytes. `--trace-ascii` starts each line with the
time since the upload began; it is left out here, since it differs on every run.
README.md's \"Reading a trace\" names each part with its section of RFC 9112.

## Seeing it in Wireshark

Each exchange ends with the command that captures the same exchange for Wireshark: the same
upload with `--trace-pcap FILE` instead of `--trace-ascii -`, which writes the bytes chunkwire
sent and received as a pcapng file, with no root and no tcpdump. Port 18081 is not one
Wireshark dissects as HTTP by itself: tell it to, with `-d tcp.port==18081,http` for tshark,
or *Analyze > Decode As...* in Wireshark.
"
    );
}

fn write_exchange(doc: &mut String, number: usize, exchange: &Exchange, trace: &str) {
    let file = format!("{number}-{}.pcapng", exchange.name);
    let _ = write!(
        doc,
        "
## {number}. {title}

{intro}

```sh
{command}
```

```text
{trace}```

{notes}

In Wireshark:

```sh
{capture}
tshark -r {file} -d tcp.port=={SHOWN_PORT},http -Y http -V
wireshark {file}
```
",
        title = exchange.title,
        intro = exchange.intro,
        command = shown_command(exchange.args),
        notes = exchange.notes,
        capture = capture_command(exchange, &file),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_column_goes_and_the_port_and_boundary_are_the_shown_ones() {
        let trace = "  0.000155 > * connected to 127.0.0.1:40123 at 127.0.0.1:40123\n\
                     \x20 0.000201 >         73 header               Content-Type: multipart/form-data; boundary=----chunkwire-aB3\\r\\n\n\
                     \x20 0.000301 >        188 form boundary        ------chunkwire-aB3\\r\\n\n";
        assert_eq!(
            normalise(trace, 40123, Cut::None),
            "> * connected to 127.0.0.1:18081 at 127.0.0.1:18081\n\
             >         73 header               Content-Type: multipart/form-data; boundary=----chunkwire-xxx\\r\\n\n\
             >        188 form boundary        ------chunkwire-xxx\\r\\n\n"
        );
    }

    #[test]
    fn chunks_after_the_first_are_folded_up_to_the_answer() {
        let lines = [
            ">        100 chunk size (4)       4\\r\\n",
            ">        104 chunk data           abcd (4 bytes)",
            ">        108 chunk end            \\r\\n",
            ">        110 chunk size (4)       4\\r\\n",
            ">        114 chunk data           efgh (4 bytes)",
            ">        118 chunk end            \\r\\n",
            "<          0 status line          HTTP/1.1 413 Content Too Large\\r\\n",
        ];
        let trace: String = lines
            .iter()
            .enumerate()
            .map(|(i, line)| format!("{:>10.6} {line}\n", i as f64 / 1000.0))
            .collect();
        let trace = trace.as_str();
        let shown = normalise(trace, 1, Cut::ChunksAfterTheFirst);
        assert!(!shown.contains("efgh"), "{shown}");
        assert!(shown.contains("abcd"), "{shown}");
        assert!(shown.contains("(more chunks"), "{shown}");
        assert!(
            shown.trim_end().ends_with("413 Content Too Large\\r\\n"),
            "{shown}"
        );
    }

    #[test]
    fn shown_commands_quote_what_the_shell_would_split() {
        assert_eq!(
            shown_command(&[
                "upload",
                "--trailer",
                "X-Demo: done",
                "http://127.0.0.1:PORT/up"
            ]),
            "chunkwire upload --trailer 'X-Demo: done' http://127.0.0.1:18081/up"
        );
        assert_eq!(shell_quoted("it's"), r"'it'\''s'");
        assert_eq!(shell_quoted(""), "''");
        assert_eq!(shell_quoted("list=@fruit.csv"), "list=@fruit.csv");
    }

    #[test]
    fn the_capture_command_swaps_the_trace_for_a_pcap() {
        let exchange = &EXCHANGES[0];
        let capture = capture_command(exchange, "1-chunked.pcapng");
        assert!(
            capture.contains("--trace-pcap 1-chunked.pcapng"),
            "{capture}"
        );
        assert!(!capture.contains("--trace-ascii"), "{capture}");
        assert_eq!(
            capture.replace("--trace-pcap 1-chunked.pcapng", "--trace-ascii -"),
            shown_command(exchange.args)
        );
    }
}
