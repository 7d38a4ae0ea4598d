//! Connecting by IPv6 literal and by name. (That every resolved address is tried in turn is
//! a unit test in `transport::tcp`, where the address list can be chosen.)
#![cfg(feature = "sink")]

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
fn a_host_name_is_resolved_and_sent_in_host() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let port = sink.addr().port();
    let url = format!("http://localhost:{port}/named");
    let mut response = chunkwire::put(&url, &b"by name"[..]).unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().unwrap().contains("\"bytes\":7"));
    assert!(
        response
            .peer()
            .starts_with(&format!("localhost:{port} at ")),
        "{}",
        response.peer()
    );
    let report = sink.next_report(Duration::from_secs(5)).unwrap();
    assert_eq!(report.target, "/named");
}
