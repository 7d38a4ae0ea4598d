//! Uploads through real forward proxies no one here wrote (squid, tinyproxy, pproxy; see
//! tests/support/proxies.rs): http origins in absolute form, https origins through a
//! CONNECT tunnel, byte for byte (the sink's CRC-32); Basic authentication; refusals by
//! policy; NO_PROXY; keep-alive to the proxy; many uploads at once; and what each proxy
//! does with a chunked request's trailers.
//!
//! Bodies are seekable: tinyproxy 1.11.1 closes each client connection after its response
//! without saying `Connection: close`, so a kept connection to it can die just as the next
//! upload starts on it; a seekable body is then sent again on a new connection (the retry
//! policy), where a stream could not be.
#![cfg(feature = "sink")]

#[path = "support/proxies.rs"]
mod proxies;

mod support;

#[global_allocator]
static GLOBAL: support::CountingAllocator = support::CountingAllocator;

use std::io::Cursor;
use std::time::Duration;

use chunkwire::checksum::ChecksumAlgorithm;
use chunkwire::sink::{Report, RunningSink, Sink};
use chunkwire::{Client, ClientBuilder, Proxy, ProxyTrailers, ServerTls, Stage, TlsConfig};
use proxies::{Kind, Options, RealProxy};

const WAIT: Duration = Duration::from_secs(20);

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(37) ^ (i >> 9) as u8)
        .collect()
}

fn builder() -> ClientBuilder {
    Client::builder()
        .proxy_from_environment(false)
        .chunk_size(16 * 1024)
        .stall_timeout(Some(Duration::from_secs(15)))
        .max_time(Some(Duration::from_secs(60)))
}

fn sink() -> RunningSink {
    Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap()
}

fn tls_sink() -> (RunningSink, TlsConfig) {
    let tls = ServerTls::self_signed().unwrap();
    let trust = TlsConfig::builder()
        .add_ca_pem(tls.ca_pem().as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let sink = Sink::bind("127.0.0.1:0")
        .unwrap()
        .with_tls(tls)
        .spawn()
        .unwrap();
    (sink, trust)
}

fn report(sink: &RunningSink) -> Report {
    sink.next_report(WAIT).expect("the sink reports the upload")
}

fn via(proxy: &RealProxy) -> Proxy {
    Proxy::parse(&proxy.url()).unwrap()
}

#[test]
fn chunked_and_content_length_bodies_arrive_byte_for_byte_through_each_proxy() {
    let large = pattern(300_000);
    // pproxy 2.7.9 in forward (absolute-form) mode loses request bodies past a few tens
    // of KiB now and then (curl's uploads through it fail alike, "empty reply"): small
    // bodies there; through its CONNECT tunnels any size goes.
    let small = pattern(8 * 1024 + 3);
    for kind in Kind::ALL {
        let proxy = RealProxy::start(kind);
        let plain = sink();
        let (secure, trust) = tls_sink();
        let client = builder()
            .proxy(via(&proxy))
            .tls_config(trust)
            .build()
            .unwrap();
        for (url, tunnel) in [(plain.url("/p/up"), false), (secure.url("/s/up"), true)] {
            let data = if kind == Kind::Pproxy && !tunnel {
                &small
            } else {
                &large
            };
            for length in [false, true] {
                let mut upload = client.upload(&url);
                if length {
                    upload = upload.content_length(data.len() as u64);
                }
                let mut response = upload
                    .send_seekable(Cursor::new(data))
                    .unwrap_or_else(|e| panic!("{} {url}: {e}\n{}", kind.name(), proxy.logs()));
                assert_eq!(response.status(), 200, "{} {url}", kind.name());
                assert!(
                    response.peer().starts_with("proxy 127.0.0.1:"),
                    "{}",
                    response.peer()
                );
                let _ = response.text().unwrap();
                let sink = if tunnel { &secure } else { &plain };
                let got = report(sink);
                assert_eq!(
                    got.bytes,
                    data.len() as u64,
                    "{} {url} length {length}",
                    kind.name()
                );
                assert_eq!(got.crc32, crc32fast::hash(data), "{} {url}", kind.name());
                assert!(
                    got.target.ends_with("/up"),
                    "{}: {}",
                    kind.name(),
                    got.target
                );
            }
        }
    }
}

/// The password each proxy requires: with a `%` (sent percent-encoded in the URL) where
/// the proxy's configuration can hold one.
fn password(kind: Kind) -> &'static str {
    match kind {
        Kind::Tinyproxy => "s3cret", // its configuration parser refuses '%'
        _ => "s3cr%t",
    }
}

fn auth_options(kind: Kind) -> Options {
    Options {
        basic_auth: Some(("alice".into(), password(kind).into())),
        ..Options::default()
    }
}

#[test]
fn basic_authentication_with_right_wrong_and_missing_credentials() {
    let data = pattern(20_000);
    for kind in [Kind::Squid, Kind::Tinyproxy] {
        let proxy = RealProxy::start_with(kind, auth_options(kind));
        let plain = sink();
        let (secure, trust) = tls_sink();
        let with = |url: &str| {
            builder()
                .proxy(Proxy::parse(url).unwrap())
                .tls_config(trust.clone())
                .build()
                .unwrap()
        };
        // Right: in the URL (percent-encoded), or with -U's builder option.
        let right_url = with(&proxy.url_with("alice", &password(kind).replace('%', "%25")));
        let right_option = builder()
            .proxy(via(&proxy))
            .proxy_credentials("alice", password(kind))
            .tls_config(trust.clone())
            .build()
            .unwrap();
        for client in [&right_url, &right_option] {
            for (url, sink) in [(plain.url("/a"), &plain), (secure.url("/a"), &secure)] {
                let mut response = client
                    .upload(&url)
                    .send_seekable(Cursor::new(&data))
                    .unwrap_or_else(|e| panic!("{} {url}: {e}\n{}", kind.name(), proxy.logs()));
                assert_eq!(response.status(), 200, "{} {url}", kind.name());
                let _ = response.text().unwrap();
                let got = report(sink);
                assert_eq!(got.crc32, crc32fast::hash(&data), "{}", kind.name());
            }
        }
        // Wrong and missing: through a tunnel, an error at the proxy stage that says which.
        for (client, refused) in [
            (with(&proxy.url_with("alice", "wrong")), true),
            (with(&proxy.url()), false),
        ] {
            let err = client
                .upload(&secure.url("/denied"))
                .send_seekable(Cursor::new(&data))
                .unwrap_err();
            assert_eq!(err.stage(), Stage::Proxy, "{} {err}", kind.name());
            // tinyproxy answers refused credentials with 401, missing ones with 407.
            let status = err.proxy_status();
            assert!(matches!(status, Some(401 | 407)), "{} {err}", kind.name());
            let text = err.to_string();
            assert!(refused || text.contains("Basic"), "{}: {text}", kind.name());
            let says = if refused {
                "credentials sent were refused"
            } else {
                "no credentials were sent"
            };
            assert!(text.contains(says), "{}: {text}", kind.name());
            assert!(
                text.contains(&format!("proxy 127.0.0.1:{}", proxy.port())),
                "{text}"
            );
            assert!(!text.contains("wrong"), "no password in messages: {text}");
            // In absolute form a 407 is the proxy refusing the request: an error at the
            // proxy stage (policy rule 8), unlike curl, which delivers the proxy's page.
            // tinyproxy answers refused credentials with 401 there, which is
            // indistinguishable from an origin's 401 and so is delivered as the answer.
            let response = client
                .upload(&plain.url("/denied"))
                .send_seekable(Cursor::new(&data));
            match response {
                Ok(response) => {
                    let status = response.status().as_u16();
                    assert_eq!(status, 401, "{} {status}", kind.name());
                }
                Err(e) => {
                    assert!(e.to_string().contains("proxy"), "{e}");
                    if let Some(status) = e.proxy_status() {
                        assert_eq!((status, e.stage()), (407, Stage::Proxy), "{e}");
                    }
                }
            }
        }
        assert!(
            plain.next_report(Duration::from_millis(200)).is_none(),
            "nothing refused arrived"
        );
    }
}

#[test]
fn a_connect_refused_by_policy_is_an_error_naming_the_proxy_and_status() {
    let deny = Options {
        deny_connect: true,
        ..Options::default()
    };
    for kind in [Kind::Squid, Kind::Tinyproxy] {
        let proxy = RealProxy::start_with(kind, deny.clone());
        let (secure, trust) = tls_sink();
        let client = builder()
            .proxy(via(&proxy))
            .tls_config(trust)
            .build()
            .unwrap();
        let err = client
            .upload(&secure.url("/x"))
            .send_seekable(Cursor::new(pattern(1000)))
            .unwrap_err();
        assert_eq!(err.stage(), Stage::Proxy, "{} {err}", kind.name());
        let status = err
            .proxy_status()
            .unwrap_or_else(|| panic!("{}: {err}", kind.name()));
        assert!(matches!(status, 403 | 405 | 502), "{}: {err}", kind.name());
        assert!(
            err.to_string().contains("the CONNECT to 127.0.0.1:"),
            "{err}"
        );
        assert_eq!(err.progress().body_bytes_sent, 0);
    }
}

#[test]
fn no_proxy_sends_listed_hosts_direct_and_the_rest_through_the_proxy() {
    let proxy = RealProxy::start(Kind::Squid);
    let plain = sink();
    let proxy_url = proxy.url();
    // The environment of the client, not the process's.
    let env = move |vars: &'static [(&'static str, &'static str)]| {
        let proxy_url = proxy_url.clone();
        move |name: &str| {
            if name == "http_proxy" {
                return Some(proxy_url.clone());
            }
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    let direct = builder()
        .proxy_environment(env(&[("no_proxy", "localhost,127.0.0.0/8")]))
        .build()
        .unwrap();
    let route = direct.route(&plain.url("/d")).unwrap();
    assert!(route.proxy.is_none(), "{route:?}");
    assert!(route.reason.contains("127.0.0.0/8"), "{}", route.reason);
    let mut response = direct
        .upload(&plain.url("/d"))
        .send_seekable(Cursor::new(b"direct"))
        .unwrap();
    assert!(!response.peer().starts_with("proxy"), "{}", response.peer());
    let _ = response.text();
    let proxied = builder()
        .proxy_environment(env(&[("no_proxy", "example.com")]))
        .build()
        .unwrap();
    let mut response = proxied
        .upload(&plain.url("/p"))
        .send_seekable(Cursor::new(b"proxied"))
        .unwrap();
    assert!(response.peer().starts_with("proxy"), "{}", response.peer());
    let _ = response.text();
    assert_eq!(report(&plain).target, "/d");
    assert_eq!(report(&plain).target, "/p");
    // squid writes its access log when it gets to it.
    let mut log = String::new();
    for _ in 0..100 {
        log = std::fs::read_to_string(proxy.dir().join("access.log")).unwrap_or_default();
        if log.contains("/p") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        log.contains("/p") && !log.contains("/d "),
        "squid's access log:\n{log}"
    );
}

#[test]
fn connections_to_the_proxy_and_tunnels_are_kept_alive() {
    let proxy = RealProxy::start(Kind::Squid);
    let plain = sink();
    let (secure, trust) = tls_sink();
    let client = builder()
        .proxy(via(&proxy))
        .tls_config(trust)
        .build()
        .unwrap();
    for url in [plain.url("/k"), secure.url("/k")] {
        let mut reused = Vec::new();
        for _ in 0..3 {
            let mut response = client
                .upload(&url)
                .send_seekable(Cursor::new(pattern(5000)))
                .unwrap();
            let _ = response.text().unwrap();
            reused.push(response.connection_reused());
        }
        assert_eq!(reused, [false, true, true], "{url}");
    }
}

/// What each proxy does with a chunked request's trailers in absolute form, measured here
/// (and in the README): squid 5.7 forwards the body without them, tinyproxy 1.11.1 stops
/// forwarding in the middle of the trailer section so the upload stalls, pproxy 2.7.9
/// passes them through. By default an upload with trailers therefore takes a CONNECT
/// tunnel, where they arrive as sent; `Refuse` refuses it; `SendAnyway` shows the loss.
#[test]
fn trailers_through_each_proxy_arrive_through_a_tunnel_and_are_never_lost_silently() {
    let data = pattern(40_000);
    for kind in Kind::ALL {
        let proxy = RealProxy::start(kind);
        let plain = sink();
        let with = |policy| {
            builder()
                .proxy(via(&proxy))
                .proxy_trailers(policy)
                .stall_timeout(Some(Duration::from_secs(3)))
                .build()
                .unwrap()
        };
        // The default: a tunnel, and every trailer arrives, the checksum included.
        let client = with(ProxyTrailers::Tunnel);
        let upload = client
            .upload(&plain.url("/t"))
            .trailer("X-Check", "abc")
            .checksum_trailer(ChecksumAlgorithm::Sha256);
        let route = upload.route().unwrap();
        assert!(
            route.tunnel && route.reason.contains("trailers"),
            "{route:?}"
        );
        let mut response = upload
            .send_seekable(Cursor::new(&data))
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", kind.name(), proxy.logs()));
        assert_eq!(response.status(), 200);
        let _ = response.text();
        let got = report(&plain);
        assert_eq!(got.crc32, crc32fast::hash(&data), "{}", kind.name());
        let names: Vec<&str> = got.trailers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["X-Check", "Content-Digest"], "{}", kind.name());

        // Refused before anything is sent.
        let err = with(ProxyTrailers::Refuse)
            .upload(&plain.url("/t"))
            .trailer("X-Check", "abc")
            .send_seekable(Cursor::new(&data))
            .unwrap_err();
        assert!(
            err.is_request() && err.to_string().contains("trailers"),
            "{err}"
        );

        // Sent anyway in absolute form: what the proxy itself does.
        let sent = with(ProxyTrailers::SendAnyway)
            .upload(&plain.url("/t"))
            .trailer("X-Check", "abc")
            .send_seekable(Cursor::new(&data));
        match kind {
            Kind::Squid => {
                let mut response = sent.unwrap();
                assert_eq!(response.status(), 200);
                let _ = response.text();
                let got = report(&plain);
                assert_eq!(got.crc32, crc32fast::hash(&data));
                assert!(
                    got.trailers.is_empty(),
                    "squid forwarded them: {:?}",
                    got.trailers
                );
            }
            Kind::Tinyproxy => {
                let err = sent.unwrap_err();
                assert_eq!(
                    err.timeout_kind(),
                    Some(chunkwire::TimeoutKind::Stall),
                    "{err}"
                );
            }
            Kind::Pproxy => {
                let mut response = sent.unwrap();
                let _ = response.text();
                let got = report(&plain);
                assert_eq!(got.trailers, [("X-Check".to_owned(), "abc".to_owned())]);
            }
        }
    }
}

#[test]
fn many_uploads_at_once_through_one_proxy_with_the_multi_set() {
    for kind in [Kind::Squid, Kind::Tinyproxy] {
        let proxy = RealProxy::start(kind);
        let plain = sink();
        let (secure, trust) = tls_sink();
        let client = builder()
            .proxy(via(&proxy))
            .tls_config(trust)
            .build()
            .unwrap();
        let bodies: Vec<Vec<u8>> = (0..40usize).map(|i| pattern(1000 + i * 997)).collect();
        let mut uploads = client.uploads().unwrap().max_active(20);
        let mut expected = std::collections::HashMap::new();
        for (i, body) in bodies.iter().enumerate() {
            let path = format!("/many/{i}");
            let url = if i % 2 == 0 {
                plain.url(&path)
            } else {
                secure.url(&path)
            };
            let mut upload = client.upload(&url);
            if i % 3 == 0 {
                upload = upload.content_length(body.len() as u64);
            }
            let id = uploads.add_seekable(upload, Cursor::new(&body[..]));
            expected.insert(id, (i, path));
        }
        let mut done = 0;
        for finished in uploads.by_ref() {
            let (i, path) = &expected[&finished.id];
            let completed = finished
                .result
                .unwrap_or_else(|e| panic!("{} {path}: {e}\n{}", kind.name(), proxy.logs()));
            assert_eq!(completed.status, 200, "{} {path}", kind.name());
            assert!(completed.peer.starts_with("proxy "), "{}", completed.peer);
            let report = String::from_utf8_lossy(&completed.body).into_owned();
            let crc = format!("\"crc32\":\"{:08x}\"", crc32fast::hash(&bodies[*i]));
            assert!(report.contains(&crc), "{} {path}: {report}", kind.name());
            assert!(
                report.contains(&format!("\"target\":\"{path}\"")),
                "{report}"
            );
            done += 1;
        }
        assert_eq!(done, bodies.len(), "{}", kind.name());
    }
}

#[test]
fn an_https_proxy_carries_absolute_form_and_tunnels_with_tls_inside_tls() {
    let tls = Options {
        tls: true,
        ..Options::default()
    };
    let proxy = RealProxy::start_with(Kind::Pproxy, tls);
    let trust = TlsConfig::builder()
        .add_ca_pem(proxy.cert_pem().as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let plain = sink();
    let client = builder()
        .proxy(Proxy::parse(&proxy.url()).unwrap())
        .proxy_tls_config(trust)
        .build()
        .unwrap();
    let data = pattern(8 * 1024);
    let mut response = client
        .upload(&plain.url("/over-tls"))
        .send_seekable(Cursor::new(&data))
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.logs()));
    assert_eq!(response.status(), 200);
    let summary = response.tls().expect("TLS to the proxy");
    assert!(summary.version.starts_with("TLSv1"), "{summary:?}");
    let _ = response.text();
    assert_eq!(report(&plain).crc32, crc32fast::hash(&data));
    // Without the proxy's CA the handshake with the proxy fails, naming it.
    let err = builder()
        .proxy(Proxy::parse(&proxy.url()).unwrap())
        .build()
        .unwrap()
        .upload(&plain.url("/untrusted"))
        .send_seekable(Cursor::new(&data))
        .unwrap_err();
    assert_eq!(err.stage(), Stage::TlsHandshake, "{err}");
    assert!(err.to_string().contains("proxy 127.0.0.1:"), "{err}");
    // TLS inside TLS: a CONNECT inside the session to the proxy, and TLS to the https
    // origin inside the tunnel; and `--proxytunnel` to an http origin the same way.
    let (secure, origin_trust) = tls_sink();
    let proxy_trust = TlsConfig::builder()
        .add_ca_pem(proxy.cert_pem().as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let big = pattern(500_000);
    for tunnel_http in [false, true] {
        let client = builder()
            .proxy(Proxy::parse(&proxy.url()).unwrap())
            .proxy_tls_config(proxy_trust.clone())
            .tls_config(origin_trust.clone())
            .proxy_tunnel(tunnel_http)
            .build()
            .unwrap();
        let (url, sink) = if tunnel_http {
            (plain.url("/inside-tls"), &plain)
        } else {
            (secure.url("/tls-in-tls"), &secure)
        };
        for _ in 0..2 {
            let mut response = client
                .upload(&url)
                .send_seekable(Cursor::new(&big))
                .unwrap_or_else(|e| panic!("{url}: {e}\n{}", proxy.logs()));
            assert_eq!(response.status(), 200, "{url}");
            let summary = response.tls().expect("TLS");
            let subject = summary.peer_subject.clone().unwrap_or_default();
            if tunnel_http {
                assert!(
                    !subject.contains("chunkwire sink"),
                    "the proxy's: {summary:?}"
                );
            } else {
                assert!(
                    subject.contains("chunkwire sink"),
                    "the origin's: {summary:?}"
                );
            }
            let _ = response.text();
            let got = report(sink);
            assert_eq!(got.bytes, big.len() as u64, "{url}");
            assert_eq!(got.crc32, crc32fast::hash(&big), "{url}");
        }
    }
}

/// A purpose-written proxy for one connection: reads the CONNECT head, then runs `then`
/// on the stream with that head. Returns its URL and what `then` returned.
fn scripted_proxy<T: Send + 'static>(
    then: impl FnOnce(std::net::TcpStream, String) -> T + Send + 'static,
) -> (String, std::thread::JoinHandle<T>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        then(stream, String::from_utf8_lossy(&head).into_owned())
    });
    (url, handle)
}

#[test]
fn proxy_authorization_goes_with_the_connect_and_never_to_the_origin() {
    use std::io::{Read, Write};
    let (url, proxy) = scripted_proxy(|mut stream, connect| {
        stream
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .unwrap();
        // Inside the tunnel this scripted proxy is the origin too: read the request.
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"0\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            request.push(byte[0]);
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        (connect, String::from_utf8_lossy(&request).into_owned())
    });
    let client = builder()
        .proxy(Proxy::parse(&url).unwrap())
        .proxy_tunnel(true)
        .proxy_header("X-Proxy-Only", "1")
        .build()
        .unwrap();
    let response = client
        .upload("http://origin.example:8080/up")
        .header("Proxy-Authorization", "Basic Zm9vOmJhcg==")
        .header("X-For-Origin", "2")
        .send_seekable(Cursor::new(b"body"))
        .unwrap();
    assert_eq!(response.status(), 200);
    let (connect, request) = proxy.join().unwrap();
    assert!(
        connect
            .starts_with("CONNECT origin.example:8080 HTTP/1.1\r\nHost: origin.example:8080\r\n"),
        "{connect}"
    );
    assert!(
        connect.contains("Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"),
        "{connect}"
    );
    assert!(
        connect.contains("X-Proxy-Only: 1\r\n") && !connect.contains("X-For-Origin"),
        "{connect}"
    );
    assert!(
        request.starts_with("PUT /up HTTP/1.1\r\nHost: origin.example:8080\r\n"),
        "{request}"
    );
    assert!(
        request.contains("X-For-Origin: 2") && !request.contains("Proxy-Authorization"),
        "{request}"
    );
    assert!(!request.contains("X-Proxy-Only"), "{request}");
}

#[test]
fn a_proxy_that_closes_or_stays_silent_is_an_error_at_the_proxy_stage() {
    // Closes before answering the CONNECT.
    let (url, proxy) = scripted_proxy(|stream, _| drop(stream));
    let client = builder()
        .proxy(Proxy::parse(&url).unwrap())
        .build()
        .unwrap();
    let err = client
        .upload("https://origin.example/up")
        .send_seekable(Cursor::new(b"body"))
        .unwrap_err();
    proxy.join().unwrap();
    assert_eq!(err.stage(), Stage::Proxy, "{err}");
    assert!(
        err.to_string()
            .contains("closed the connection before answering the CONNECT"),
        "{err}"
    );
    assert!(err.to_string().contains("proxy 127.0.0.1:"), "{err}");

    // Never answers: the connect deadline covers the CONNECT.
    let (url, proxy) = scripted_proxy(|stream, _| {
        std::thread::sleep(Duration::from_secs(3));
        drop(stream)
    });
    let client = builder()
        .proxy(Proxy::parse(&url).unwrap())
        .connect_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let err = client
        .upload("https://origin.example/up")
        .send_seekable(Cursor::new(b"body"))
        .unwrap_err();
    assert_eq!(err.stage(), Stage::Proxy, "{err}");
    assert_eq!(
        err.timeout_kind(),
        Some(chunkwire::TimeoutKind::Connect),
        "{err}"
    );
    proxy.join().unwrap();

    // Opens the tunnel, then closes in the middle of the upload: the error names the
    // proxy and how far the upload got.
    let (url, proxy) = scripted_proxy(|mut stream, _| {
        use std::io::{Read, Write};
        stream.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        let mut some = [0u8; 10_000];
        let _ = stream.read(&mut some);
        drop(stream)
    });
    let client = builder()
        .proxy(Proxy::parse(&url).unwrap())
        .proxy_tunnel(true)
        .build()
        .unwrap();
    let err = client
        .upload("http://origin.example/up")
        .send_seekable(Cursor::new(pattern(5_000_000)))
        .unwrap_err();
    proxy.join().unwrap();
    assert!(err.to_string().contains("proxy 127.0.0.1:"), "{err}");
    assert!(err.progress().body_bytes_sent < 5_000_000, "{err}");
}

/// Zero-filled body of `left` bytes that records this thread's allocation counters at its
/// second read and its last.
struct Recording {
    left: usize,
    reads: usize,
    at_second_read: Option<(u64, i64)>,
    at_last_read: Option<(u64, i64)>,
}

impl std::io::Read for Recording {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        self.reads += 1;
        if self.reads == 2 {
            self.at_second_read = Some(support::counters());
        }
        let n = out.len().min(self.left);
        out[..n].fill(0x5A);
        self.left -= n;
        if self.left == 0 && self.at_last_read.is_none() {
            self.at_last_read = Some(support::counters());
        }
        Ok(n)
    }
}

#[test]
fn through_a_proxy_nothing_is_allocated_per_chunk() {
    let proxy = RealProxy::start(Kind::Squid);
    let plain = sink();
    let chunk = 16 * 1024;
    let chunks = 500;
    for tunnel in [false, true] {
        let client = builder()
            .chunk_size(chunk)
            .proxy(via(&proxy))
            .proxy_tunnel(tunnel)
            .build()
            .unwrap();
        let mut source = Recording {
            left: chunk * chunks,
            reads: 0,
            at_second_read: None,
            at_last_read: None,
        };
        let mut response = client.upload(&plain.url("/mem")).send(&mut source).unwrap();
        assert_eq!(response.status(), 200);
        let _ = response.text();
        assert_eq!(report(&plain).bytes, (chunk * chunks) as u64);
        let (before, live_before) = source.at_second_read.unwrap();
        let (after, live_after) = source.at_last_read.unwrap();
        assert_eq!(
            after - before,
            0,
            "tunnel {tunnel}: allocations while {chunks} chunks streamed"
        );
        assert_eq!(live_after, live_before, "tunnel {tunnel}: live heap");
    }
}
