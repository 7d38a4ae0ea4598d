//! The command line through proxies: each spelling of the environment variables and the
//! CGI guard (the CLI run with a controlled environment), `-v` naming the proxy and why,
//! `-x`, `--noproxy`, `-U`, `-p`, `--proxy-header`, the CONNECT in the trace (its
//! `Proxy-Authorization` masked), and curl's exit codes for proxy failures.
#![cfg(feature = "cli")]

#[path = "support/proxies.rs"]
mod proxies;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use chunkwire::sink::{RunningSink, Sink};
use proxies::{Kind, Options, RealProxy};

/// A file to upload, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("chunkwire-cli-proxy-{}-{name}", std::process::id()));
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

/// The CLI with only `vars` in its environment.
fn run(vars: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chunkwire"))
        .env_clear()
        .envs(vars.iter().copied())
        .arg("upload")
        .args(["-s", "-v", "--max-time", "30"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn sink() -> RunningSink {
    Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap()
}

/// A loopback port nothing listens on: a proxy there refuses every connection.
fn dead_proxy() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

#[test]
fn each_spelling_of_the_variables_by_curls_rules_and_the_cgi_guard() {
    let plain = sink();
    let url = plain.url("/env");
    let file = TempFile::new("env", b"hello through the environment");
    let dead = dead_proxy();
    let dead = dead.as_str();
    /// The variables, whether the upload goes through the proxy, and what -v names.
    type Case<'a> = (&'a [(&'a str, &'a str)], bool, &'a str);
    let cases: &[Case] = &[
        (&[("http_proxy", dead)], true, "http_proxy"),
        // Upper case HTTP_PROXY is never read (httpoxy).
        (&[("HTTP_PROXY", dead)], false, ""),
        // The CGI guard.
        (
            &[("http_proxy", dead), ("REQUEST_METHOD", "POST")],
            false,
            "REQUEST_METHOD",
        ),
        (&[("all_proxy", dead)], true, "all_proxy"),
        (&[("ALL_PROXY", dead)], true, "ALL_PROXY"),
        // https_proxy is for https targets only.
        (&[("https_proxy", dead), ("HTTPS_PROXY", dead)], false, ""),
        (
            &[("http_proxy", dead), ("no_proxy", "127.0.0.1")],
            false,
            "127.0.0.1",
        ),
        (
            &[("http_proxy", dead), ("NO_PROXY", "127.0.0.0/8")],
            false,
            "NO_PROXY",
        ),
        (&[("http_proxy", dead), ("NO_PROXY", "*")], false, "\"*\""),
        (
            &[("http_proxy", dead), ("no_proxy", "example.com")],
            true,
            "http_proxy",
        ),
    ];
    for (vars, proxied, reason) in cases {
        let output = run(vars, &[&url, file.path()]);
        let err = stderr(&output);
        if *proxied {
            assert_eq!(output.status.code(), Some(7), "{vars:?}: {err}");
            assert!(err.contains("proxy 127.0.0.1:"), "{vars:?}: {err}");
        } else {
            assert_eq!(output.status.code(), Some(0), "{vars:?}: {err}");
            assert!(plain.next_report(Duration::from_secs(5)).is_some());
        }
        assert!(err.contains(reason), "{vars:?}: -v says why: {err}");
        if reason.is_empty() {
            assert!(
                !err.contains("proxy"),
                "{vars:?}: no proxy to speak of: {err}"
            );
        }
    }
    // -x and --noproxy replace the variables.
    let output = run(
        &[("http_proxy", dead)],
        &["--noproxy", "", "-x", dead, &url, file.path()],
    );
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    let output = run(
        &[("no_proxy", "")],
        &["--noproxy", "127.0.0.1", "-x", dead, &url, file.path()],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // An empty -x turns proxies off, the environment's included, as curl.
    let output = run(
        &[("http_proxy", dead), ("all_proxy", dead)],
        &["-x", "", &url, file.path()],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn https_proxy_variables_reach_an_https_origin_through_a_real_proxy() {
    let proxy = RealProxy::start(Kind::Squid);
    let tls = chunkwire::ServerTls::self_signed().unwrap();
    let ca = TempFile::new("ca.pem", tls.ca_pem().as_bytes());
    let secure = Sink::bind("127.0.0.1:0")
        .unwrap()
        .with_tls(tls)
        .spawn()
        .unwrap();
    let data = vec![7u8; 100_000];
    let file = TempFile::new("tls-body", &data);
    for name in ["https_proxy", "HTTPS_PROXY"] {
        let output = run(
            &[(name, &proxy.url())],
            &["--cacert", ca.path(), &secure.url("/s"), file.path()],
        );
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(0), "{name}: {err}");
        assert!(err.contains(name) && err.contains("CONNECT"), "{err}");
        let report = secure.next_report(Duration::from_secs(5)).unwrap();
        assert_eq!(report.crc32, crc32fast::hash(&data));
    }
}

#[test]
fn the_trace_shows_the_connect_labelled_and_masks_the_proxy_credentials() {
    let proxy = RealProxy::start_with(
        Kind::Squid,
        Options {
            basic_auth: Some(("alice".into(), "hunter2".into())),
            ..Options::default()
        },
    );
    let plain = sink();
    let file = TempFile::new("trace-body", b"tunnelled");
    let output = run(
        &[],
        &[
            "-x",
            &proxy.url(),
            "-U",
            "alice:hunter2",
            "-p",
            "--proxy-header",
            "X-For-Proxy: yes",
            "--trace-ascii",
            "-",
            &plain.url("/tr"),
            file.path(),
        ],
    );
    let trace = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{trace}",
        stderr(&output)
    );
    let connect = trace
        .find("CONNECT 127.0.0.1:")
        .expect("the CONNECT request line");
    let established = trace
        .find("tunnel open")
        .expect("a note that the tunnel opened");
    let put = trace
        .find("PUT /tr HTTP/1.1")
        .expect("the request inside the tunnel");
    assert!(connect < established && established < put, "{trace}");
    assert!(trace.contains("X-For-Proxy: yes"), "{trace}");
    assert!(trace.contains("Proxy-Authorization: Basic"), "{trace}");
    assert!(
        !trace.contains("aHVudGVyMg") && !trace.contains("hunter2"),
        "{trace}"
    );
    // Sent to the proxy only: the origin never saw it.
    let report = plain.next_report(Duration::from_secs(5)).unwrap();
    assert_eq!(report.target, "/tr");
    let put_line = &trace[put..];
    assert!(!put_line.contains("Proxy-Authorization"), "{trace}");
}

#[test]
fn exit_codes_for_proxy_failures_are_curls() {
    let plain = sink();
    let file = TempFile::new("codes", b"x");
    let url = plain.url("/c");
    // A proxy that refuses connections: 7, as curl.
    let output = run(&[], &["-x", &dead_proxy(), &url, file.path()]);
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    // A proxy name that does not resolve: 5 (CURLE_COULDNT_RESOLVE_PROXY).
    let output = run(&[], &["-x", "http://proxy.invalid:3128", &url, file.path()]);
    assert_eq!(output.status.code(), Some(5), "{}", stderr(&output));
    // A CONNECT refused (403 by policy, 407 without credentials): 56, as curl.
    let deny = RealProxy::start_with(
        Kind::Squid,
        Options {
            deny_connect: true,
            ..Options::default()
        },
    );
    let output = run(&[], &["-p", "-x", &deny.url(), &url, file.path()]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(56), "{err}");
    assert!(err.contains("proxy failed") && err.contains("403"), "{err}");
    // A SOCKS proxy is refused clearly before anything is sent.
    let output = run(&[], &["-x", "socks5://127.0.0.1:1080", &url, file.path()]);
    assert!(stderr(&output).contains("SOCKS"), "{}", stderr(&output));
    assert_ne!(output.status.code(), Some(0));
}

#[test]
fn parallel_uploads_and_forms_go_through_the_proxy_too() {
    let proxy = RealProxy::start(Kind::Squid);
    let plain = sink();
    let files: Vec<TempFile> = (0..3)
        .map(|i| TempFile::new(&format!("par{i}"), &vec![b'a' + i as u8; 50_000 + i]))
        .collect();
    let (proxy_url, url) = (proxy.url(), plain.url("/par/"));
    let mut args = vec!["-Z", "-x", &proxy_url, &url];
    args.extend(files.iter().map(TempFile::path));
    let output = run(&[], &args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let mut sizes: Vec<u64> = (0..3)
        .map(|_| plain.next_report(Duration::from_secs(5)).unwrap().bytes)
        .collect();
    sizes.sort();
    assert_eq!(sizes, [50_000, 50_001, 50_002]);
    // squid saw them (it writes its access log when it gets to it).
    let mut log = String::new();
    for _ in 0..100 {
        log = std::fs::read_to_string(proxy.dir().join("access.log")).unwrap_or_default();
        if log.matches("/par/").count() == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        log.matches("/par/").count(),
        3,
        "squid's access log:\n{log}"
    );
    // A form, through the environment's proxy (the dead one would fail it with exit 7).
    let output = Command::new(env!("CARGO_BIN_EXE_chunkwire"))
        .env_clear()
        .env("http_proxy", dead_proxy())
        .args(["upload", "-s", "-F", "name=value", &plain.url("/form")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("proxy 127.0.0.1:"),
        "{}",
        stderr(&output)
    );
}

/// A proxy in absolute form that answers every request with 407 after reading its head
/// and body; gives back the request heads it read.
fn demanding_proxy() -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (heads, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // The head, then whatever of the (small) body follows within a moment.
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            std::thread::sleep(Duration::from_millis(50));
            let _ = heads.send(String::from_utf8_lossy(&got).into_owned());
            let _ = stream.write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                  Proxy-Authenticate: Basic realm=\"corp\"\r\n\
                  Content-Length: 6\r\nConnection: close\r\n\r\ndenied",
            );
        }
    });
    (url, seen)
}

#[test]
fn a_407_to_a_request_in_absolute_form_is_a_proxy_error_not_a_success() {
    let file = TempFile::new("absolute-407", b"an upload the proxy never forwards");
    let (proxy, heads) = demanding_proxy();
    // Without credentials: the proxy asked for Basic, none were sent.
    let output = run(
        &[],
        &["-x", &proxy, "http://origin.example/up", file.path()],
    );
    let err = stderr(&output);
    assert!(
        heads
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .starts_with("PUT http://origin.example/up ")
    );
    assert_eq!(output.status.code(), Some(56), "{err}");
    assert!(err.contains("407") && err.contains("Basic"), "{err}");
    assert!(err.contains("proxy"), "{err}");
    assert!(
        output.stdout.is_empty(),
        "the proxy's page is not the origin's answer"
    );
    // With credentials that it refuses: the message says they were refused, and never
    // shows the password.
    let output = run(
        &[],
        &[
            "-x",
            &proxy,
            "-U",
            "alice:s3cret",
            "http://origin.example/up",
            file.path(),
        ],
    );
    let err = stderr(&output);
    assert!(
        heads
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .contains("Proxy-Authorization: Basic ")
    );
    assert_eq!(output.status.code(), Some(56), "{err}");
    assert!(err.contains("refused"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

/// tshark's `fields` of the HTTP messages in `capture`, the proxy's port dissected as HTTP
/// (a CONNECT, then the tunnel's TLS, decrypted with the capture's own secrets).
fn tshark_http(capture: &std::path::Path, proxy_port: u16) -> Vec<String> {
    let output = Command::new("tshark")
        .arg("-r")
        .arg(capture)
        .args(["-d", &format!("tcp.port=={proxy_port},http")])
        .args(["-Y", "http", "-T", "fields", "-E", "separator=|"])
        .args(["-e", "http.request.method", "-e", "http.request.uri"])
        .args(["-e", "http.transfer_encoding", "-e", "http.response.code"])
        .output()
        .expect("tshark runs (.ci/run installs it)");
    assert!(output.status.success(), "{}", stderr(&output));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        // Segments of a message reassembled later match the filter with no fields.
        .filter(|line| line.chars().any(|c| c != '|'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_capture_through_a_tunnel_shows_the_connect_then_decrypts_the_tls_inside() {
    let proxy = RealProxy::start(Kind::Squid);
    let tls = chunkwire::ServerTls::self_signed().unwrap();
    let ca = TempFile::new("tunnel-ca.pem", tls.ca_pem().as_bytes());
    let secure = Sink::bind("127.0.0.1:0")
        .unwrap()
        .with_tls(tls)
        .spawn()
        .unwrap();
    let file = TempFile::new("tunnel-body", &vec![3u8; 50_000]);
    let capture = TempFile::new("tunnel.pcapng", b"");
    let output = run(
        &[],
        &[
            "-x",
            &proxy.url(),
            "--cacert",
            ca.path(),
            "--trace-pcap",
            capture.path(),
            &secure.url("/in-tunnel"),
            file.path(),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(secure.next_report(Duration::from_secs(5)).is_some());
    let messages = tshark_http(&capture.0, proxy.port());
    let authority = secure.addr().to_string();
    // The CONNECT and the proxy's 200 in the clear, then the request inside the tunnel,
    // decrypted with no key file, then the origin's answer.
    assert_eq!(
        messages,
        [
            format!("CONNECT|{authority}||"),
            "|||200".to_owned(),
            "PUT|/in-tunnel|chunked|".to_owned(),
            "|||200".to_owned(),
        ],
        "{messages:?}"
    );
}
