//! `chunkwire walkthrough`: the wire walkthrough for learners (docs/wire-walkthrough.md),
//! made by running each exchange for real. It starts a loopback sink, makes the sample files
//! with the shell commands the document shows, runs each `chunkwire upload` command the
//! document shows (this same program, as a child process) and puts its `--trace-ascii`
//! output under it. Only what differs from run to run is rewritten: the port (shown as
//! 18081), the time column (left out), the random part of the form boundary, and, after an
//! early answer, the number of chunks that left before chunkwire read it.
//! `tests/walkthrough.rs` runs it again and compares with the checked-in document.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::thread;
use std::time::Duration;

use chunkwire::sink::Sink;

use super::args::WalkthroughArgs;

/// The port the document shows; the sink listens on a free port and the traces are
/// rewritten to this one.
pub const SHOWN_PORT: u16 = 18081;

/// The proxy port the document shows (squid's customary one).
pub const SHOWN_PROXY_PORT: u16 = 3128;

/// A forward proxy that allows CONNECT to any port, for readers: PyPI's pproxy.
const PROXY_COMMAND: &str = "pproxy -l http://127.0.0.1:3128";

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

/// Stands for the sink's port in the arguments of an exchange.
const PORT: &str = "PORT";
/// Stands for the proxy's port.
const PROXY_PORT: &str = "PROXY";

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
    /// The port the capture's HTTP is on: the sink's, or the proxy's.
    capture_port: u16,
    /// More tshark options this capture needs, and why (Markdown), if any.
    tshark_options: &'static str,
    capture_note: &'static str,
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
        capture_port: SHOWN_PORT,
        tshark_options: "",
        capture_note: "",
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
        capture_port: SHOWN_PORT,
        tshark_options: "",
        capture_note: "",
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
        capture_port: SHOWN_PORT,
        tshark_options: " -o http.desegment_body:FALSE",
        capture_note: "\
The request is never whole (its body is never sent), and Wireshark shows an HTTP message once it
is: `-o http.desegment_body:FALSE` makes it show the request head without waiting for the
body (in Wireshark: Preferences, Protocols, HTTP, \"Reassemble HTTP bodies spanning multiple
TCP segments\").",
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
  chunks it writes, and here it stopped long before the 4,096 chunks of the file. With
  `-v` it says how far it got: `* the server answered before the body was complete; upload
  stopped after N body bytes`.
- There is no **last chunk**: the body is cut off, and the connection is closed, since
  nothing can follow an unfinished chunked body on it. The sink reads and drops what is
  still in flight for a moment before it closes, so its 413 is not lost to a reset (a
  \"lingering close\", RFC 9112 section 9.6).",
        capture_port: SHOWN_PORT,
        tshark_options: " -o http.desegment_body:FALSE",
        capture_note: "\
The request is never whole (its chunked body is cut off), and Wireshark shows an HTTP message once it
is: `-o http.desegment_body:FALSE` makes it show the request head without waiting for the
body (in Wireshark: Preferences, Protocols, HTTP, \"Reassemble HTTP bodies spanning multiple
TCP segments\").",
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
        capture_port: SHOWN_PORT,
        tshark_options: "",
        capture_note: "",
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
        capture_port: SHOWN_PORT,
        tshark_options: "",
        capture_note: "",
    },
    Exchange {
        name: "tunnel",
        title: "Through a proxy's CONNECT tunnel",
        intro: "\
`-x` names a forward proxy, and `-p` asks it for a tunnel: chunkwire sends `CONNECT
127.0.0.1:18081 HTTP/1.1` (RFC 9110 section 9.3.6), with the target in authority form (RFC
9112 section 3.2.3). Once the proxy answers 2xx, the connection is a tunnel to the origin:
the proxy only moves bytes, and the upload goes through it as it would go directly. (The
walkthrough runs a small CONNECT-only proxy of its own on loopback, shown as port 3128.)",
        args: &[
            "upload",
            "-p",
            "-x",
            "http://127.0.0.1:PROXY",
            "--trace-ascii",
            "-",
            "-o",
            "/dev/null",
            "http://127.0.0.1:PORT/tunnel",
            "hello.txt",
        ],
        cut: Cut::None,
        present: &[
            "* proxy: via proxy http://127.0.0.1:3128 (a CONNECT tunnel)",
            "request line         CONNECT 127.0.0.1:18081 HTTP/1.1\\r\\n",
            "status line          HTTP/1.1 200 Connection established",
            "request line         PUT /tunnel HTTP/1.1",
            "HTTP/1.1 200 OK",
        ],
        absent: &["PUT http://"],
        notes: "\
- The **notes** (`*`) say which proxy was used and why, then that the tunnel is open. The
  CONNECT has a head and no body; the proxy's `200` ends with its empty line, and whatever
  follows is the origin's. A proxy may add header lines to its 200 (pproxy adds
  `Connection: close`, which changes nothing here: a tunnel's connection ends with it).
- Offsets count on across the tunnel, in both directions: the `PUT` starts after the bytes
  of the CONNECT, and the origin's status line after the proxy's answer. Over an
  `https://` target the TLS handshake would run here, inside the tunnel.
- Without `-p`, an `http://` target goes to the proxy in absolute form (`PUT
  http://127.0.0.1:18081/tunnel HTTP/1.1`, RFC 9112 section 3.2.2), and the proxy makes
  the request to the origin itself.",
        capture_port: SHOWN_PROXY_PORT,
        tshark_options: " -d tcp.port==18081,http",
        capture_note: "\
Wireshark dissects what goes through a tunnel by the port the CONNECT asked for: the second
`-d` makes that port HTTP too, so the request inside the tunnel is dissected as well as the
CONNECT (in Wireshark: *Decode As...* both ports as HTTP).",
    },
    Exchange {
        name: "proxy-trailers",
        title: "Trailers through a proxy: a tunnel even without -p",
        intro: "\
Forward proxies do not pass a request's trailer fields on: squid drops them, tinyproxy stalls
in the trailer section (README.md, \"Proxies\"). A checksum in a trailer sent to a proxy in
absolute form would be lost. So chunkwire sends an upload with trailers through a CONNECT
tunnel even to an `http://` target and without `-p`: in the tunnel the proxy cannot touch
the message, and the trailer arrives as it was sent.",
        args: &[
            "upload",
            "-x",
            "http://127.0.0.1:PROXY",
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
            "through a CONNECT tunnel because the upload has trailers",
            "request line         CONNECT 127.0.0.1:18081 HTTP/1.1\\r\\n",
            "trailer              Content-Digest: sha-256=:",
            "HTTP/1.1 200 OK",
        ],
        absent: &["PUT http://"],
        notes: "\
- The first note says it: the upload would have gone in absolute form (no `-p`), and goes
  through a tunnel because it has trailers.
- `--proxy-trailers refuse` refuses such an upload before anything is sent, and
  `--proxy-trailers send` sends it in absolute form anyway.",
        capture_port: SHOWN_PROXY_PORT,
        tshark_options: " -d tcp.port==18081,http",
        capture_note: "\
Wireshark dissects what goes through a tunnel by the port the CONNECT asked for: the second
`-d` makes that port HTTP too, so the request inside the tunnel is dissected as well as the
CONNECT (in Wireshark: *Decode As...* both ports as HTTP).",
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
    let proxy = start_tunnel_proxy()?.port();
    let mut doc = String::new();
    write_intro(&mut doc);
    for (i, exchange) in EXCHANGES.iter().enumerate() {
        let trace = run_exchange(&exe, &dir.0, (port, proxy), exchange)?;
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

/// A CONNECT-only forward proxy on loopback, for the tunnel exchange: it answers `200` to a
/// `CONNECT 127.0.0.1:port`, then moves bytes both ways until either side closes. Anything
/// else, or a tunnel to anywhere but loopback, gets a `403`. Each connection has a thread;
/// they end with the process.
fn start_tunnel_proxy() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot start the loopback proxy: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    thread::Builder::new()
        .name("walkthrough-proxy".into())
        .spawn(move || {
            for client in listener.incoming().flatten() {
                let _ = thread::Builder::new()
                    .name("walkthrough-tunnel".into())
                    .spawn(move || tunnel(client));
            }
        })
        .map_err(|e| format!("cannot start the loopback proxy: {e}"))?;
    Ok(addr)
}

/// Serves one proxy connection: the CONNECT, then the tunnel.
fn tunnel(mut client: TcpStream) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    // The head, a byte at a time, so that nothing after it is read here: the client may
    // send its first bytes for the origin right behind it.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 || client.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let target = head
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("CONNECT "))
        .and_then(|rest| rest.strip_suffix(" HTTP/1.1"))
        .filter(|authority| authority.starts_with("127.0.0.1:"));
    let Some(upstream) = target.and_then(|authority| TcpStream::connect(authority).ok()) else {
        client.write_all(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    };
    client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    client.set_read_timeout(None)?;
    let (mut from_client, mut to_upstream) = (client.try_clone()?, upstream.try_clone()?);
    let up = thread::spawn(move || {
        let _ = io::copy(&mut from_client, &mut to_upstream);
        let _ = to_upstream.shutdown(Shutdown::Write);
    });
    let (mut from_upstream, mut to_client) = (upstream, client);
    let _ = io::copy(&mut from_upstream, &mut to_client);
    let _ = to_client.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
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
fn run_exchange(
    exe: &Path,
    dir: &Path,
    (port, proxy): (u16, u16),
    exchange: &Exchange,
) -> Result<String, String> {
    let args: Vec<String> = exchange
        .args
        .iter()
        .map(|arg| {
            arg.replace(PORT, &port.to_string())
                .replace(PROXY_PORT, &proxy.to_string())
        })
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
    let trace = normalise(&printed, (port, proxy), exchange.cut);
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

/// The trace without its time column, with the shown ports, the boundary's random part as
/// `x`s, and the cut `cut` asks for.
fn normalise(trace: &str, (port, proxy): (u16, u16), cut: Cut) -> String {
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
        let mut line = shown_ports(line, &[(port, SHOWN_PORT), (proxy, SHOWN_PROXY_PORT)]);
        if let Some(random) = &boundary {
            line = line.replace(random.as_str(), &"x".repeat(random.len()));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// `line` with each loopback address `127.0.0.1:actual` of `ports` (a whole port number,
/// not the start of a longer one) as `127.0.0.1:shown`.
fn shown_ports(line: &str, ports: &[(u16, u16)]) -> String {
    const HOST: &str = "127.0.0.1:";
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find(HOST) {
        let after = &rest[at + HOST.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        out.push_str(&rest[..at + HOST.len()]);
        let number = &after[..digits];
        match ports
            .iter()
            .find(|(actual, _)| actual.to_string() == number)
        {
            Some((_, shown)) => out.push_str(&shown.to_string()),
            None => out.push_str(number),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
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
        let arg = arg
            .replace(PORT, &SHOWN_PORT.to_string())
            .replace(PROXY_PORT, &SHOWN_PROXY_PORT.to_string());
        line.push_str(&shell_quoted(&arg));
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
trailer, a multipart form, and a CONNECT tunnel through a proxy. Every trace below is what chunkwire printed for the command
above it, run by `chunkwire walkthrough` against a loopback sink; `tests/walkthrough.rs`
runs them all again and checks that this page is still what the tool prints.

## Setting up

A sink to upload to, in a terminal of its own; `--max-body 1k` makes it answer `413 Content
Too Large` to a body over 1 KiB, as a server with an upload limit does:

```sh
{SINK_COMMAND}
```

(With `--trace-ascii -` as well, the sink prints each exchange from the receiving side.)

For the two exchanges through a proxy, a forward proxy that allows CONNECT to any port, in
another terminal (PyPI's pproxy: `pip install pproxy`; squid and tinyproxy do too, once
configured to allow CONNECT to port 18081):

```sh
{PROXY_COMMAND}
```

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
Wireshark dissects as HTTP by itself: tell it to, with `-d tcp.port==18081,http` for tshark
(`3128` for the exchanges through the proxy), or *Analyze > Decode As...* in Wireshark.
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
tshark -r {file} -d tcp.port=={capture_port},http{tshark_options} -Y http -O http
wireshark {file}
```
{capture_note}",
        title = exchange.title,
        intro = exchange.intro,
        command = shown_command(exchange.args),
        notes = exchange.notes,
        capture = capture_command(exchange, &file),
        capture_port = exchange.capture_port,
        tshark_options = exchange.tshark_options,
        capture_note = if exchange.capture_note.is_empty() {
            String::new()
        } else {
            format!("\n{}\n", exchange.capture_note)
        },
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
            normalise(trace, (40123, 1), Cut::None),
            "> * connected to 127.0.0.1:18081 at 127.0.0.1:18081\n\
             >         73 header               Content-Type: multipart/form-data; boundary=----chunkwire-xxx\\r\\n\n\
             >        188 form boundary        ------chunkwire-xxx\\r\\n\n"
        );
    }

    #[test]
    fn only_whole_port_numbers_are_replaced() {
        let ports = [(40123, 18081), (4012, 3128)];
        assert_eq!(
            shown_ports(
                "127.0.0.1:40123 127.0.0.1:4012/x 127.0.0.1:401 host:40123",
                &ports
            ),
            "127.0.0.1:18081 127.0.0.1:3128/x 127.0.0.1:401 host:40123"
        );
        // A port that is the start of the shown one is not mistaken for it.
        assert_eq!(
            shown_ports(
                "127.0.0.1:1808 127.0.0.1:40123",
                &[(40123, 18081), (1808, 3128)]
            ),
            "127.0.0.1:3128 127.0.0.1:18081"
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
        let shown = normalise(trace, (1, 2), Cut::ChunksAfterTheFirst);
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
