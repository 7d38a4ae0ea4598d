//! Connecting by IPv6 literal and by a name with several addresses: every resolved address
//! is tried in turn, so one that refuses does not fail the upload.
#![cfg(feature = "sink")]

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::time::Duration;

use chunkwire::sink::Sink;

#[test]
fn ipv6_literal_with_brackets() {
    let Ok(sink) = Sink::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback on this machine; nothing to test");
        return;
    };
    let sink = sink.spawn().unwrap();
    let url = format!("http://[::1]:{}/six", sink.addr().port());
    let mut response = chunkwire::put(&url, &b"over IPv6"[..]).unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().unwrap().contains("\"bytes\":9"));
    assert!(response.peer().contains("[::1]"), "{}", response.peer());
}

#[test]
fn a_refusing_address_falls_through_to_the_next() {
    // `localhost` resolves to ::1 and 127.0.0.1 on most machines. Listen on the IPv4 one
    // only and make sure nothing listens on the same IPv6 port.
    let addrs: Vec<SocketAddr> = ("localhost", 0).to_socket_addrs().unwrap().collect();
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let port = sink.addr().port();
    let ipv6_free =
        TcpListener::bind(("::1", port)).is_ok() || !addrs.iter().any(SocketAddr::is_ipv6);
    let url = format!("http://localhost:{port}/fallback");
    let mut response = chunkwire::put(&url, &b"either way"[..]).unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().unwrap().contains("\"bytes\":10"));
    assert!(response.peer().contains("127.0.0.1"), "{}", response.peer());
    let report = sink.next_report(Duration::from_secs(5)).unwrap();
    assert_eq!(report.target, "/fallback");
    assert!(ipv6_free, "something else listens on [::1]:{port}");
}
