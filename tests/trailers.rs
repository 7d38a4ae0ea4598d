//! Trailers: a checksum computed while streaming and verified on the receiving side,
//! trailers made after the body is read, and names that must not be trailers.
#![cfg(all(feature = "sink", feature = "checksum"))]

use std::time::Duration;

use chunkwire::checksum::ChecksumAlgorithm;
use chunkwire::sink::Sink;
use chunkwire::{Client, RequestError};
use sha2::Digest;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 + i / 700) as u8).collect()
}

fn base64(bytes: &[u8]) -> String {
    // A second, independent encoder for the check: the standard library has none.
    let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = String::new();
    for b in bytes {
        bits.push_str(&format!("{b:08b}"));
    }
    while !bits.len().is_multiple_of(6) {
        bits.push('0');
    }
    let mut out: String = bits
        .as_bytes()
        .chunks(6)
        .map(|six| {
            table[usize::from_str_radix(std::str::from_utf8(six).unwrap(), 2).unwrap()] as char
        })
        .collect();
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

fn digest_trailer(algorithm: ChecksumAlgorithm, data: &[u8]) -> String {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let mut response = Client::builder()
        .chunk_size(10_000)
        .build()
        .unwrap()
        .upload(&sink.url("/sum"))
        .checksum_trailer(algorithm)
        .send(data)
        .unwrap();
    response.text().unwrap();
    let report = sink.next_report(Duration::from_secs(5)).unwrap();
    assert_eq!(report.bytes, data.len() as u64);
    let (name, value) = report.trailers.first().expect("a trailer").clone();
    assert_eq!(name, "Content-Digest");
    value
}

#[test]
fn sha256_trailer_matches_the_body() {
    let data = pattern(123_457);
    let expected = format!("sha-256=:{}:", base64(&sha2::Sha256::digest(&data)));
    assert_eq!(digest_trailer(ChecksumAlgorithm::Sha256, &data), expected);
}

#[test]
fn crc32c_trailer_matches_the_body() {
    let data = pattern(99_999);
    let expected = format!("crc32c=:{}:", base64(&crc32c::crc32c(&data).to_be_bytes()));
    assert_eq!(digest_trailer(ChecksumAlgorithm::Crc32c, &data), expected);
}

#[test]
fn trailers_made_after_the_body_is_read() {
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let mut response = Client::new()
        .upload(&sink.url("/late"))
        .trailer("X-Static", "1")
        .trailers_with(&["X-Late"], || {
            vec![("X-Late".to_owned(), "computed".to_owned())]
        })
        .send(&b"body"[..])
        .unwrap();
    response.text().unwrap();
    let report = sink.next_report(Duration::from_secs(5)).unwrap();
    assert_eq!(
        report.trailers,
        vec![
            ("X-Static".into(), "1".into()),
            ("X-Late".into(), "computed".into())
        ]
    );
}

#[test]
fn forbidden_trailers_and_trailers_without_chunking_are_refused() {
    let err = Client::new()
        .upload("http://127.0.0.1:9/")
        .trailer("Authorization", "Bearer x")
        .send(&b"x"[..])
        .unwrap_err();
    assert_eq!(
        err.request_error(),
        Some(&RequestError::ForbiddenTrailer("Authorization".into()))
    );

    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let err = Client::new()
        .upload(&sink.url("/late"))
        .trailers_with(&[], || vec![("Content-Length".to_owned(), "5".to_owned())])
        .send(&b"body"[..])
        .unwrap_err();
    assert_eq!(
        err.request_error(),
        Some(&RequestError::ForbiddenTrailer("Content-Length".into()))
    );

    let err = Client::new()
        .upload("http://127.0.0.1:9/")
        .content_length(1)
        .checksum_trailer(ChecksumAlgorithm::Sha256)
        .send(&b"x"[..])
        .unwrap_err();
    assert!(err.is_request(), "{err}");
}
