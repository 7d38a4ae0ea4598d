//! Private forward proxies for the tests, none of them written here: Debian's squid and
//! tinyproxy, and pproxy from PyPI. `.ci/run` installs them.
//!
//! Each [`RealProxy`] is one proxy process in the foreground on 127.0.0.1 with a free
//! port and a directory of its own (configuration, logs, pid file, password file).
//! Dropping it kills the process and removes the directory, also when a test panics; a
//! watchdog shell kills it if the test process dies without dropping it. Nothing is
//! started as a service: the packages' own instances stay off (the policy-rc.d trick in
//! `.ci/run`).
//!
//! Include it with `#[path = "support/proxies.rs"] mod proxies;`.
#![allow(dead_code)]

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use std::{env, fs, thread};

/// How long a proxy may take to start answering, on a loaded machine.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// Which proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// squid 5 (Debian's `squid` package).
    Squid,
    /// tinyproxy 1.11 (Debian's `tinyproxy` package).
    Tinyproxy,
    /// pproxy from PyPI (`pip install pproxy`).
    Pproxy,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Squid, Kind::Tinyproxy, Kind::Pproxy];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Squid => "squid",
            Kind::Tinyproxy => "tinyproxy",
            Kind::Pproxy => "pproxy",
        }
    }
}

/// What the proxy asks of its clients.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Basic authentication required, with this user name and password.
    pub basic_auth: Option<(String, String)>,
    /// Refuse every CONNECT (by policy: squid's `http_access deny CONNECT`, tinyproxy's
    /// `ConnectPort 0`).
    pub deny_connect: bool,
    /// Listen with TLS (pproxy only), with a self-signed certificate for 127.0.0.1
    /// ([`RealProxy::cert_pem`]).
    pub tls: bool,
}

/// One running proxy. Dropping it stops the process and removes its directory.
#[derive(Debug)]
pub struct RealProxy {
    pub kind: Kind,
    child: Child,
    watchdog: Child,
    watchdog_stdin: Option<ChildStdin>,
    dir: PathBuf,
    port: u16,
    cert_pem: Option<String>,
}

impl RealProxy {
    pub fn start(kind: Kind) -> RealProxy {
        RealProxy::start_with(kind, Options::default())
    }

    /// Starts the proxy and waits until it accepts connections; panics with its log if it
    /// does not.
    pub fn start_with(kind: Kind, options: Options) -> RealProxy {
        let dir = fresh_dir(kind);
        let cert_pem = options.tls.then(|| write_certificate(&dir));
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut command = command(kind, &dir, port, &options);
            let child = command
                .stdin(Stdio::null())
                .stdout(Stdio::from(
                    fs::File::create(dir.join("stdout.log")).unwrap(),
                ))
                .stderr(Stdio::from(
                    fs::File::create(dir.join("stderr.log")).unwrap(),
                ))
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("could not run {} (.ci/run installs it): {e}", kind.name())
                });
            let (watchdog, watchdog_stdin) = watchdog(child.id(), &dir);
            let mut proxy = RealProxy {
                kind,
                child,
                watchdog,
                watchdog_stdin: Some(watchdog_stdin),
                dir: dir.clone(),
                port,
                cert_pem: cert_pem.clone(),
            };
            if proxy.wait_ready() {
                return proxy;
            }
            last = proxy.logs();
            proxy.stop();
            proxy.dir = PathBuf::new();
        }
        let _ = fs::remove_dir_all(&dir);
        panic!("{} did not start; its logs:\n{last}", kind.name());
    }

    /// Its directory (configuration and logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, or `https://` for a proxy that listens with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.cert_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The certificate of a proxy that listens with TLS.
    pub fn cert_pem(&self) -> &str {
        self.cert_pem.as_deref().expect("started with tls")
    }

    /// `http://user:password@127.0.0.1:PORT`.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// Everything the proxy logged so far.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for name in [
            "stdout.log",
            "stderr.log",
            "cache.log",
            "access.log",
            "proxy.log",
        ] {
            if let Ok(text) = fs::read_to_string(self.dir.join(name)) {
                all.push_str(&format!("--- {name}\n{text}"));
            }
        }
        all
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + START_DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if probe(self.port) {
                return true;
            }
            thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn stop(&mut self) {
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        drop(self.watchdog_stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RealProxy {
    fn drop(&mut self) {
        self.stop();
        if !self.dir.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// True once the port accepts a connection. The proxy was started on a port that was
/// free; had another process taken it first, the proxy would have exited (checked before).
fn probe(port: u16) -> bool {
    TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(2)).is_ok()
}

fn command(kind: Kind, dir: &Path, port: u16, options: &Options) -> Command {
    match kind {
        Kind::Squid => {
            fs::write(dir.join("squid.conf"), squid_config(dir, port, options)).unwrap();
            let mut command = Command::new(binary("CHUNKWIRE_SQUID", &["/usr/sbin/squid"]));
            command.arg("-N").arg("-f").arg(dir.join("squid.conf"));
            command
        }
        Kind::Tinyproxy => {
            fs::write(
                dir.join("tinyproxy.conf"),
                tinyproxy_config(dir, port, options),
            )
            .unwrap();
            let mut command = Command::new(binary(
                "CHUNKWIRE_TINYPROXY",
                &["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"],
            ));
            command.arg("-d").arg("-c").arg(dir.join("tinyproxy.conf"));
            command
        }
        Kind::Pproxy => {
            assert!(!options.deny_connect, "pproxy has no CONNECT policy");
            let scheme = if options.tls { "http+ssl" } else { "http" };
            let mut listen = format!("{scheme}://127.0.0.1:{port}");
            if let Some((user, password)) = &options.basic_auth {
                listen.push_str(&format!("#{user}:{password}"));
            }
            let mut command = Command::new(binary("CHUNKWIRE_PPROXY", &["pproxy"]));
            command.arg("-l").arg(listen);
            if options.tls {
                let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
                command
                    .arg("--ssl")
                    .arg(format!("{},{}", cert.display(), key.display()));
            }
            command
        }
    }
}

fn squid_config(dir: &Path, port: u16, options: &Options) -> String {
    let d = dir.display();
    let mut config = format!(
        "http_port 127.0.0.1:{port}\n\
         pid_filename {d}/squid.pid\n\
         cache_log {d}/cache.log\n\
         access_log stdio:{d}/access.log\n\
         cache deny all\n\
         cache_mem 4 MB\n\
         coredump_dir {d}\n\
         netdb_filename none\n\
         shutdown_lifetime 0 seconds\n\
         pinger_enable off\n\
         acl CONNECT method CONNECT\n"
    );
    if options.deny_connect {
        config.push_str("http_access deny CONNECT\n");
    }
    if let Some((user, password)) = &options.basic_auth {
        let hash = Command::new("openssl")
            .args(["passwd", "-1", password])
            .output()
            .expect("openssl for the squid password file");
        let hash = String::from_utf8(hash.stdout).unwrap();
        fs::write(dir.join("passwd"), format!("{user}:{}\n", hash.trim())).unwrap();
        config.push_str(&format!(
            "auth_param basic program /usr/lib/squid/basic_ncsa_auth {d}/passwd\n\
             auth_param basic realm chunkwire-tests\n\
             acl authed proxy_auth REQUIRED\n\
             http_access deny !authed\n"
        ));
    }
    config.push_str("http_access allow all\n");
    config
}

fn tinyproxy_config(dir: &Path, port: u16, options: &Options) -> String {
    let d = dir.display();
    let mut config = format!(
        "Port {port}\n\
         Listen 127.0.0.1\n\
         Timeout 60\n\
         LogFile \"{d}/proxy.log\"\n\
         LogLevel Info\n\
         PidFile \"{d}/tinyproxy.pid\"\n\
         MaxClients 100\n\
         Allow 127.0.0.1\n"
    );
    if running_as_root() {
        config.push_str("User nobody\nGroup nogroup\n");
    }
    if options.deny_connect {
        config.push_str("ConnectPort 0\n");
    }
    if let Some((user, password)) = &options.basic_auth {
        config.push_str(&format!("BasicAuth {user} {password}\n"));
    }
    config
}

/// A self-signed certificate for the loopback names, written as cert.pem and key.pem.
fn write_certificate(dir: &Path) -> String {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("a self-signed certificate");
    let cert = made.cert.pem();
    fs::write(dir.join("cert.pem"), &cert).unwrap();
    fs::write(dir.join("key.pem"), made.key_pair.serialize_pem()).unwrap();
    cert
}

fn binary(variable: &str, candidates: &[&'static str]) -> PathBuf {
    if let Some(path) = env::var_os(variable) {
        return PathBuf::from(path);
    }
    for candidate in candidates {
        let path = Path::new(candidate);
        if path.is_absolute() && path.exists() {
            return path.to_owned();
        }
    }
    // A name on the PATH (pproxy lives wherever pip put it).
    PathBuf::from(candidates.last().copied().unwrap_or_default())
}

fn fresh_dir(kind: Kind) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = env::temp_dir().join(format!(
        "chunkwire-{}-{}-{}",
        kind.name(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    // squid and tinyproxy drop root for an unprivileged user that must write their logs.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Kills `pid` and removes `dir` when its standard input closes (the test process ended).
fn watchdog(pid: u32, dir: &Path) -> (Child, ChildStdin) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"while read -r line; do :; done; kill -KILL "$1" 2>/dev/null; rm -rf -- "$2""#)
        .arg("chunkwire-proxy-watchdog")
        .arg(pid.to_string())
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh for the proxy watchdog");
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}
