//! A private nginx for the tests: a server no one here wrote that takes uploads with
//! `PUT` (its WebDAV module) and writes each body to a file, so what chunkwire sent can be
//! compared byte for byte with what nginx decoded.
//!
//! Each [`Nginx`] is one nginx process in the foreground (`daemon off; master_process
//! off;`) on 127.0.0.1 with ports of its own, and a directory of its own holding its
//! configuration, pid file, logs, temp paths and the root where bodies land. Dropping it
//! kills nginx and removes the directory, also when a test panics; a watchdog process kills
//! nginx (and removes the directory) if the test process dies without dropping it.
//!
//! One nginx takes many uploads at once (`worker_connections 1024`; a body goes to a temp
//! file, so each upload in flight holds a socket and a file). [`Nginx::endpoint`] gives the
//! base URL and the directory where files land; [`Nginx::read`] and [`Nginx::assert_file`]
//! read one back by the path it was put to; [`Nginx::wait_logged`] lists what nginx saw.
//!
//! Include it with `#[path = "support/nginx.rs"] mod nginx;`. nginx must be installed:
//! `.ci/run` installs Debian's nginx (it has the dav module and ssl). `CHUNKWIRE_NGINX` may
//! name another binary.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use std::{env, fs, thread};

/// How long nginx may take to start answering, on a loaded machine.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// The path under which nginx takes at most 1 KiB of body (`client_max_body_size 1k`), to
/// provoke 413. Everywhere else a body may be of any size.
pub const SMALL: &str = "/small/";

/// The path under which nginx answers `200 discarded` as soon as it has the head, and
/// reads and throws away the body that follows (an early 2xx).
pub const DISCARD: &str = "/discard/";

/// The path under which nginx keeps no connection (`keepalive_timeout 0`): every response
/// there says `Connection: close`.
pub const CLOSE: &str = "/close/";

/// What to start.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Also listen with TLS on a second port, with a self-signed certificate for
    /// `127.0.0.1` and `localhost` (see [`Nginx::cert_pem`]).
    pub tls: bool,
}

/// One running nginx. Dropping it stops nginx and removes its directory.
#[derive(Debug)]
pub struct Nginx {
    nginx: Child,
    /// Kills nginx when its standard input, held here, closes: when the test process ends
    /// without dropping this (a kill, an abort).
    watchdog: Child,
    watchdog_stdin: Option<ChildStdin>,
    dir: PathBuf,
    port: u16,
    tls_port: Option<u16>,
    cert_pem: Option<String>,
}

impl Nginx {
    /// Starts nginx on plain HTTP only.
    pub fn start() -> Nginx {
        Nginx::start_with(Options::default())
    }

    /// Starts nginx on plain HTTP and on TLS.
    pub fn start_tls() -> Nginx {
        Nginx::start_with(Options { tls: true })
    }

    /// Starts nginx and waits until it answers. Panics, with nginx's error log, if it does
    /// not.
    pub fn start_with(options: Options) -> Nginx {
        let binary = nginx_binary();
        let dir = fresh_dir();
        let cert_pem = options.tls.then(|| write_certificate(&dir));
        // The ports are free when looked up, but another process may take one before nginx
        // binds it: then nginx exits at once, and it is started again on others.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let tls_port = options.tls.then(free_port);
            fs::write(dir.join("nginx.conf"), config(&dir, port, tls_port)).unwrap();
            let _ = fs::remove_file(dir.join("logs/error.log"));
            let nginx = Command::new(binary)
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-e")
                .arg(dir.join("logs/error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("could not run {}: {e}", binary.display()));
            let (watchdog, watchdog_stdin) = watchdog(nginx.id(), &dir);
            let mut server = Nginx {
                nginx,
                watchdog,
                watchdog_stdin: Some(watchdog_stdin),
                dir: dir.clone(),
                port,
                tls_port,
                cert_pem: cert_pem.clone(),
            };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(log) => {
                    server.stop_processes();
                    if !log.contains("Address already in use") {
                        panic!("nginx did not start; its error log:\n{log}");
                    }
                    // So that dropping it leaves the directory to the next try.
                    server.dir = PathBuf::new();
                    last_log = log;
                }
            }
        }
        let _ = fs::remove_dir_all(&dir);
        panic!("nginx found no free port in 5 tries; its last error log:\n{last_log}");
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `https://127.0.0.1:PORT`, for a server started with TLS.
    pub fn tls_base_url(&self) -> String {
        let port = self.tls_port.expect("this nginx was started without TLS");
        format!("https://127.0.0.1:{port}")
    }

    /// The plain URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        assert!(path.starts_with('/'), "{path}");
        format!("{}{path}", self.base_url())
    }

    /// The TLS URL of `path` (which starts with `/`).
    pub fn tls_url(&self, path: &str) -> String {
        assert!(path.starts_with('/'), "{path}");
        format!("{}{path}", self.tls_base_url())
    }

    /// The directory where `PUT /a/b` lands as the file `a/b`.
    pub fn files_dir(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// (base URL, directory where files land): all a test needs to upload and check.
    pub fn endpoint(&self) -> (String, PathBuf) {
        (self.base_url(), self.files_dir())
    }

    /// Where the body of `PUT path` landed (`path` with or without its leading `/`).
    pub fn file_path(&self, path: &str) -> PathBuf {
        self.files_dir().join(path.trim_start_matches('/'))
    }

    /// The file nginx wrote for `PUT path`, or None if there is none.
    pub fn try_read(&self, path: &str) -> Option<Vec<u8>> {
        match fs::read(self.file_path(path)) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => panic!("reading the file nginx wrote for {path}: {e}"),
        }
    }

    /// The file nginx wrote for `PUT path`; panics if there is none.
    pub fn read(&self, path: &str) -> Vec<u8> {
        self.try_read(path)
            .unwrap_or_else(|| panic!("nginx wrote no file for {path}"))
    }

    /// Asserts that nginx wrote exactly `expected` for `PUT path`, naming the first byte
    /// that differs rather than printing megabytes.
    pub fn assert_file(&self, path: &str, expected: &[u8]) {
        assert_same_bytes(path, &self.read(path), expected);
    }

    /// The self-signed certificate (PEM) nginx presents on TLS: the one trust anchor a
    /// client needs.
    pub fn cert_pem(&self) -> &str {
        self.cert_pem
            .as_deref()
            .expect("this nginx was started without TLS")
    }

    /// nginx's error log so far (level info: it names refused and broken requests).
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.join("logs/error.log")).unwrap_or_default()
    }

    /// The requests nginx has logged so far, in order.
    pub fn logged(&self) -> Vec<Logged> {
        fs::read_to_string(self.dir.join("logs/access.log"))
            .unwrap_or_default()
            .lines()
            .map(Logged::parse)
            .collect()
    }

    /// The requests nginx has logged, once there are at least `count`. nginx writes the
    /// line after it sent the response, so it may come a little after the response did.
    pub fn wait_logged(&self, count: usize) -> Vec<Logged> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let logged = self.logged();
            if logged.len() >= count {
                return logged;
            }
            assert!(
                Instant::now() < deadline,
                "nginx logged {} requests, not {count}: {logged:#?}",
                logged.len()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Polls until nginx answers on its plain port (and so has bound every port); the log
    /// if it exits first or the deadline passes.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_DEADLINE;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(status) = self.nginx.try_wait().unwrap() {
                return Err(format!("(nginx exited: {status})\n{}", self.error_log()));
            }
            if probe(addr) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "(not answering after {START_DEADLINE:?})\n{}",
                    self.error_log()
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Watchdog first, so it cannot signal a process id that is no longer nginx's.
    fn stop_processes(&mut self) {
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        drop(self.watchdog_stdin.take());
        let _ = self.nginx.kill();
        let _ = self.nginx.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop_processes();
        if self.dir.as_os_str().is_empty() {
            return; // a failed start, retried in the same directory
        }
        if thread::panicking() {
            let log = self.error_log();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!("--- nginx error log, last lines:");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        if env::var_os("CHUNKWIRE_KEEP_NGINX").is_some() {
            eprintln!("nginx directory kept: {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// One line of nginx's access log, in the format the configuration below sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// nginx's serial number of the connection: the same for requests on a kept one.
    pub connection: u64,
    /// Which request this was on its connection, from 1.
    pub connection_requests: u64,
    pub method: String,
    pub uri: String,
    pub status: u16,
    /// Bytes of the request nginx read: head, framing and body. Signed, because nginx
    /// 1.22 logs a negative length (-7 was seen) for a request whose head arrived in the
    /// same read as the end of a body it was throwing away (after an early answer).
    pub request_length: i64,
    pub transfer_encoding: Option<String>,
    pub content_length: Option<String>,
    pub expect: Option<String>,
    pub trailer: Option<String>,
}

impl Logged {
    fn parse(line: &str) -> Logged {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 10, "unexpected access log line: {line:?}");
        let number = |i: usize| -> i64 {
            fields[i]
                .parse()
                .unwrap_or_else(|_| panic!("field {i} of {line:?}"))
        };
        let header = |i: usize| (fields[i] != "-").then(|| fields[i].to_owned());
        Logged {
            connection: number(0) as u64,
            connection_requests: number(1) as u64,
            method: fields[2].to_owned(),
            uri: fields[3].to_owned(),
            status: number(4) as u16,
            request_length: number(5),
            transfer_encoding: header(6),
            content_length: header(7),
            expect: header(8),
            trailer: header(9),
        }
    }
}

/// Asserts two byte strings are equal, saying where they first differ.
pub fn assert_same_bytes(what: &str, got: &[u8], expected: &[u8]) {
    if got == expected {
        return;
    }
    let first = got
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(expected.len()));
    let around = |bytes: &[u8]| {
        let end = bytes.len().min(first + 16);
        format!("{:02x?}", &bytes[first.min(end)..end])
    };
    panic!(
        "{what}: {} bytes, {} expected; first difference at byte {first}: {} instead of {}",
        got.len(),
        expected.len(),
        around(got),
        around(expected),
    );
}

/// `len` bytes that do not repeat: each 8-byte word is a different hash of `seed` and its
/// position, so a chunk lost, doubled, moved or taken from another upload shows.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    Pattern::new(seed, len as u64)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// [`pattern`] as a reader, for bodies too large to hold.
#[derive(Debug, Clone)]
pub struct Pattern {
    seed: u64,
    position: u64,
    len: u64,
}

impl Pattern {
    pub fn new(seed: u64, len: u64) -> Pattern {
        Pattern {
            seed,
            position: 0,
            len,
        }
    }
}

impl Read for Pattern {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = out.len().min((self.len - self.position) as usize);
        for byte in &mut out[..n] {
            let word = splitmix64(self.seed ^ (self.position / 8).wrapping_mul(0x9e37_79b9));
            *byte = word.to_le_bytes()[(self.position % 8) as usize];
            self.position += 1;
        }
        Ok(n)
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The nginx to run: `CHUNKWIRE_NGINX`, else `nginx` on PATH, else where Debian puts it
/// (`/usr/sbin` is not on every user's PATH). It must have the dav and ssl modules.
fn nginx_binary() -> &'static Path {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let candidates: Vec<PathBuf> = match env::var_os("CHUNKWIRE_NGINX") {
            Some(named) => vec![PathBuf::from(named)],
            None => env::split_paths(&env::var_os("PATH").unwrap_or_default())
                .map(|dir| dir.join("nginx"))
                .chain(["/usr/sbin/nginx", "/usr/local/sbin/nginx"].map(PathBuf::from))
                .collect(),
        };
        let binary = candidates
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| {
                "nginx is needed for this test and was not found (on PATH, /usr/sbin/nginx or \
             $CHUNKWIRE_NGINX): .ci/run installs Debian's nginx"
                    .to_owned()
            })?;
        let version = Command::new(&binary)
            .arg("-V")
            .output()
            .map_err(|e| format!("{} -V failed: {e}", binary.display()))?;
        // nginx prints its build options to standard error.
        let built = String::from_utf8_lossy(&version.stderr).into_owned();
        for module in ["--with-http_dav_module", "--with-http_ssl_module"] {
            if !built.contains(module) {
                return Err(format!(
                    "{} was built without {module}, which these tests need: .ci/run installs \
                     Debian's nginx, which has it\n{built}",
                    binary.display()
                ));
            }
        }
        Ok(binary)
    });
    match found {
        Ok(binary) => binary,
        Err(message) => panic!("{message}"),
    }
}

/// A new empty directory for one nginx, with its subdirectories.
fn fresh_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = env::temp_dir().join(format!(
        "chunkwire-nginx-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    // A leftover of an earlier test process that had the same id and was killed.
    let _ = fs::remove_dir_all(&dir);
    for sub in ["root", "logs", "temp"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    dir
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// True once nginx answers the readiness location (and so is nginx, not some other
/// process that took the port).
fn probe(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /__ready HTTP/1.1\r\nHost: ready\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    answer.starts_with("HTTP/1.1 204") && answer.contains("\r\nServer: nginx")
}

/// A shell that waits for its standard input to end, then kills nginx and removes its
/// directory. The test process holds the only writer, so the input ends when it exits,
/// however it exits; a normal drop kills the watchdog first.
fn watchdog(nginx: u32, dir: &Path) -> (Child, ChildStdin) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"while read -r line; do :; done; kill -KILL "$1" 2>/dev/null; rm -rf -- "$2""#)
        .arg("chunkwire-nginx-watchdog")
        .arg(nginx.to_string())
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh for the nginx watchdog");
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

/// A self-signed certificate for the loopback names, written as cert.pem and key.pem;
/// returns the certificate. rcgen comes with chunkwire's `sink` feature (on by default).
#[cfg(feature = "sink")]
fn write_certificate(dir: &Path) -> String {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("a self-signed certificate");
    let cert = made.cert.pem();
    fs::write(dir.join("cert.pem"), &cert).unwrap();
    fs::write(dir.join("key.pem"), made.key_pair.serialize_pem()).unwrap();
    cert
}

#[cfg(not(feature = "sink"))]
fn write_certificate(_: &Path) -> String {
    panic!("nginx over TLS needs a certificate from rcgen: build with the `sink` feature");
}

/// True when this process runs as root: /proc/self belongs to the effective user.
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The configuration of one nginx in `dir`.
fn config(dir: &Path, port: u16, tls_port: Option<u16>) -> String {
    let d = dir.display();
    let mut conf = String::new();
    // One process, in the foreground: killing it stops everything. As root nginx would
    // otherwise name `nobody` as its user and hand it the temp paths; naming root keeps
    // every path writable by whoever writes there, should worker processes be turned on.
    conf.push_str("daemon off;\nmaster_process off;\nworker_processes 1;\n");
    if running_as_root() {
        conf.push_str("user root root;\n");
    }
    writeln!(conf, "pid \"{d}/nginx.pid\";").unwrap();
    writeln!(conf, "error_log \"{d}/logs/error.log\" info;").unwrap();
    conf.push_str("events {\n    worker_connections 1024;\n}\nhttp {\n");
    conf.push_str(concat!(
        "    log_format chunkwire \"$connection\\t$connection_requests\\t$request_method",
        "\\t$uri\\t$status\\t$request_length\\t$http_transfer_encoding\\t$http_content_length",
        "\\t$http_expect\\t$http_trailer\";\n",
    ));
    writeln!(conf, "    access_log \"{d}/logs/access.log\" chunkwire;").unwrap();
    for temp in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        writeln!(conf, "    {temp}_temp_path \"{d}/temp/{temp}\";").unwrap();
    }
    conf.push_str(concat!(
        "    keepalive_requests 1000000;\n",
        "    keepalive_timeout 120s;\n",
        "    client_body_timeout 60s;\n",
        "    send_timeout 60s;\n",
        "    client_max_body_size 0;\n",
        "    server {\n",
    ));
    writeln!(conf, "        listen 127.0.0.1:{port};").unwrap();
    if let Some(tls_port) = tls_port {
        writeln!(conf, "        listen 127.0.0.1:{tls_port} ssl;").unwrap();
        writeln!(conf, "        ssl_certificate \"{d}/cert.pem\";").unwrap();
        writeln!(conf, "        ssl_certificate_key \"{d}/key.pem\";").unwrap();
        // 1.22's default leaves TLS 1.3 out.
        conf.push_str("        ssl_protocols TLSv1.2 TLSv1.3;\n");
    }
    writeln!(conf, "        root \"{d}/root\";").unwrap();
    conf.push_str(concat!(
        "        dav_methods PUT;\n",
        "        create_full_put_path on;\n",
        "        location /small/ {\n",
        "            client_max_body_size 1k;\n",
        "        }\n",
        "        location /close/ {\n",
        "            keepalive_timeout 0;\n",
        "        }\n",
        "        location /discard/ {\n",
        "            return 200 \"discarded\\n\";\n",
        "        }\n",
        "        location = /__ready {\n",
        "            access_log off;\n",
        "            return 204;\n",
        "        }\n",
        "    }\n",
        "}\n",
    ));
    conf
}
