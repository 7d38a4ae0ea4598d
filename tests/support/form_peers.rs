//! Multipart parsers no one here wrote, as servers for the tests: a Starlette app
//! (python-multipart parses the form, uvicorn on h11 serves it), aiohttp's server with its
//! streaming multipart reader, and Node's http server with busboy. Each is a script in
//! `tests/support/form_peers/` that listens on 127.0.0.1 port 0, prints the port on its
//! first line, and answers `POST /upload` with a JSON [`Report`] of what its parser
//! decoded: every part's name, file name, content type and size, a SHA-256 of each file
//! part, each text field's value, and how the body was framed. `/redirect` answers `307`
//! to `/upload` without reading the body.
//!
//! A [`Peer`] holds its process's standard input: the script exits when that closes, so a
//! peer dies with its test process however that ends; dropping a `Peer` also kills it.
//! [`peers`] starts each kind once per test binary and shares them (each serves many
//! requests at once).
//!
//! Include it with `#[path = "support/form_peers.rs"] mod form_peers;`. `.ci/run`
//! installs what the scripts need: `pip install -r tests/support/form_peers/requirements.txt`
//! and `npm ci` in `tests/support/form_peers/` (busboy into its `node_modules`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::thread;
use std::time::Duration;

use serde_json::Value;

/// How long a peer may take to print its port, on a loaded machine.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// One of the third-party parsers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Starlette's `request.form()`: python-multipart, under uvicorn (h11).
    Starlette,
    /// aiohttp's `request.multipart()` reader, under aiohttp's own server.
    Aiohttp,
    /// busboy under Node's `http` server.
    Busboy,
}

impl Kind {
    /// Every kind, in the order tests go through them.
    pub const ALL: [Kind; 3] = [Kind::Starlette, Kind::Aiohttp, Kind::Busboy];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Starlette => "starlette",
            Kind::Aiohttp => "aiohttp",
            Kind::Busboy => "busboy",
        }
    }

    fn command(self) -> (&'static str, &'static str) {
        match self {
            Kind::Starlette => ("python3", "starlette_peer.py"),
            Kind::Aiohttp => ("python3", "aiohttp_peer.py"),
            Kind::Busboy => ("node", "busboy_peer.js"),
        }
    }

    fn install_hint(self) -> &'static str {
        match self {
            Kind::Starlette | Kind::Aiohttp => {
                "`.ci/run` installs them: pip install -r tests/support/form_peers/requirements.txt"
            }
            Kind::Busboy => "`.ci/run` installs it: (cd tests/support/form_peers && npm ci)",
        }
    }
}

/// The folder of the peer scripts.
pub fn scripts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/form_peers")
}

/// One running peer. Dropping it kills the process.
#[derive(Debug)]
pub struct Peer {
    kind: Kind,
    child: Child,
    /// Held so the script lives; it exits when this closes.
    stdin: Option<ChildStdin>,
    port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Peer {
    /// Starts a peer and waits for its port. Panics, saying what to install, if it cannot
    /// start (a missing interpreter, package or module).
    pub fn start(kind: Kind) -> Peer {
        let (program, script) = kind.command();
        let dir = scripts_dir();
        if kind == Kind::Busboy && !dir.join("node_modules/busboy").is_dir() {
            panic!(
                "the busboy test peer is missing: no {}; {}",
                dir.join("node_modules/busboy").display(),
                kind.install_hint()
            );
        }
        let mut child = Command::new(program)
            .arg(dir.join(script))
            .current_dir(&dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not run `{program}` for the {} test peer: {e}; {}",
                    kind.name(),
                    kind.install_hint()
                )
            });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut child_stderr = child.stderr.take().unwrap();
        let collected = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = child_stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                collected
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (port_tx, port_rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut first = String::new();
            let _ = port_tx.send(lines.read_line(&mut first).map(|_| first));
            // Drain the rest so a chatty peer never blocks on a full pipe.
            let mut sink = Vec::new();
            let _ = lines.read_to_end(&mut sink);
        });
        let stdin = child.stdin.take();
        let mut peer = Peer {
            kind,
            child,
            stdin,
            port: 0,
            stderr,
        };
        let line = port_rx.recv_timeout(START_DEADLINE);
        match line {
            Ok(Ok(line)) if line.trim().parse::<u16>().is_ok_and(|p| p != 0) => {
                peer.port = line.trim().parse().unwrap();
                peer
            }
            other => {
                // Let its stderr reader catch the last words.
                let _ = peer.child.kill();
                let _ = peer.child.wait();
                thread::sleep(Duration::from_millis(200));
                panic!(
                    "the {} test peer did not start (first line {other:?}); {}; its stderr:\n{}",
                    kind.name(),
                    kind.install_hint(),
                    peer.stderr()
                );
            }
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT/path` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The form endpoint.
    pub fn upload_url(&self) -> String {
        self.url("/upload")
    }

    /// The endpoint that answers 307 to [`Peer::upload_url`].
    pub fn redirect_url(&self) -> String {
        self.url("/redirect")
    }

    /// What the peer wrote on stderr so far (tracebacks of a failed request land here).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One peer of each kind, started on first use and shared by the tests of this binary.
/// They end with the test process (their standard input closes).
pub fn peers() -> &'static [Peer] {
    static PEERS: OnceLock<Vec<Peer>> = OnceLock::new();
    PEERS.get_or_init(|| {
        // Started at once: the Python ones spend most of their start importing.
        let handles: Vec<_> = Kind::ALL
            .into_iter()
            .map(|kind| thread::spawn(move || Peer::start(kind)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// What a peer's parser decoded from one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartReport {
    pub name: String,
    /// None for a text field (no `filename` parameter).
    pub filename: Option<String>,
    /// The part's `Content-Type` as the parser reports it (busboy names a default,
    /// `text/plain`, for a part without one; the Python parsers None).
    pub content_type: Option<String>,
    pub size: u64,
    /// Lower-case hex SHA-256 of a file part's content.
    pub sha256: Option<String>,
    /// A text field's value.
    pub value: Option<String>,
}

/// A peer's answer to one form upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub peer: String,
    pub method: String,
    /// `chunked`, `content-length` or `none`.
    pub framing: String,
    pub content_length: Option<u64>,
    /// Raw body bytes the server read (after removing any chunk framing).
    pub body_bytes: u64,
    pub content_type: Option<String>,
    pub parts: Vec<PartReport>,
}

impl Report {
    /// The report from a peer's response body; an `{"error": ...}` answer (the parser
    /// refused the body) or anything else is an Err with the text.
    pub fn parse(body: &[u8]) -> Result<Report, String> {
        let text = String::from_utf8_lossy(body);
        let value: Value =
            serde_json::from_str(&text).map_err(|e| format!("not JSON ({e}): {text}"))?;
        if value.get("error").is_some() {
            return Err(format!("the parser refused the form: {text}"));
        }
        let string = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(String::from);
        let number = |v: &Value, key: &str| v.get(key).and_then(Value::as_u64);
        let missing = |key: &str| format!("no {key} in {text}");
        let parts = value
            .get("parts")
            .and_then(Value::as_array)
            .ok_or_else(|| missing("parts"))?
            .iter()
            .map(|part| {
                Ok(PartReport {
                    name: string(part, "name").ok_or_else(|| missing("part name"))?,
                    filename: string(part, "filename"),
                    content_type: string(part, "content_type"),
                    size: number(part, "size").ok_or_else(|| missing("part size"))?,
                    sha256: string(part, "sha256"),
                    value: string(part, "value"),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Report {
            peer: string(&value, "peer").ok_or_else(|| missing("peer"))?,
            method: string(&value, "method").ok_or_else(|| missing("method"))?,
            framing: string(&value, "framing").ok_or_else(|| missing("framing"))?,
            content_length: number(&value, "content_length"),
            body_bytes: number(&value, "body_bytes").ok_or_else(|| missing("body_bytes"))?,
            content_type: string(&value, "content_type"),
            parts,
        })
    }

    /// The part named `name`; panics, listing the names that did arrive, if there is none.
    pub fn part(&self, name: &str) -> &PartReport {
        self.parts
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| {
                let names: Vec<_> = self.parts.iter().map(|p| &p.name).collect();
                panic!("{}: no part named {name:?}; parts: {names:?}", self.peer)
            })
    }
}
