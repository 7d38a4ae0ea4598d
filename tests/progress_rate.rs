//! The progress callback reaches the total; the rate limit holds (checked by bytes and
//! elapsed time, with bounds a loaded machine cannot break: load only makes uploads slower).
#![cfg(feature = "sink")]

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use chunkwire::sink::Sink;
use chunkwire::{Client, UploadProgress};

#[test]
fn progress_reaches_the_total_and_never_goes_back() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let body = vec![7u8; 1 << 20];
    let seen: Rc<RefCell<Vec<UploadProgress>>> = Rc::default();
    let record = Rc::clone(&seen);
    let mut response = Client::builder()
        .chunk_size(16 * 1024)
        .build()
        .unwrap()
        .upload(&sink.url("/progress"))
        .size_hint(body.len() as u64)
        .progress(move |p| record.borrow_mut().push(*p))
        .send(&body[..])
        .unwrap();
    response.text().unwrap();
    let seen = seen.borrow();
    assert!(seen.len() >= 64, "called for each chunk: {}", seen.len());
    assert!(
        seen.windows(2)
            .all(|w| w[0].body_bytes_sent <= w[1].body_bytes_sent)
    );
    let last = seen.last().unwrap();
    assert_eq!(last.body_bytes_sent, body.len() as u64);
    assert_eq!(last.total, Some(body.len() as u64));
    assert!(last.bytes_per_second > 0.0);
}

#[test]
fn the_rate_limit_holds() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let rate: u64 = 1 << 20;
    let body = vec![1u8; 3 << 19]; // 1.5 MiB
    let started = Instant::now();
    let mut response = Client::new()
        .upload(&sink.url("/slow"))
        .limit_rate(rate)
        .send(&body[..])
        .unwrap();
    let elapsed = started.elapsed();
    let wire = response.progress().wire_bytes_sent;
    response.text().unwrap();
    assert_eq!(
        sink.next_report(Duration::from_secs(5)).unwrap().bytes,
        body.len() as u64
    );
    // The first tenth of a second's worth may go at once; everything after it is paced.
    let paced = wire - rate / 10;
    let achieved = paced as f64 / elapsed.as_secs_f64();
    assert!(
        achieved <= rate as f64 * 1.05,
        "{achieved:.0} bytes/s over a limit of {rate}"
    );
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
}
