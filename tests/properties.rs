//! Property tests: encode/decode round trips with arbitrary data, chunk capacities, source
//! read splits with `Interrupted` errors, transport write splits and decoder feed splits,
//! chunked and with Content-Length; and the chunked decoder against splits of arbitrary
//! input. The properties are the fuzz checks (`fuzz/checks.rs`), fed structured inputs.

#[path = "../fuzz/checks.rs"]
mod checks;

use checks::Splits;
use proptest::collection::vec;
use proptest::prelude::*;

/// Read, write or feed sizes: mostly small, sometimes larger than a chunk.
fn sizes() -> impl Strategy<Value = Vec<usize>> {
    vec(prop_oneof![3 => 1usize..=16, 1 => 1usize..=5000], 1..8)
}

fn splits() -> impl Strategy<Value = Splits> {
    (sizes(), vec(any::<bool>(), 0..6), sizes()).prop_map(|(reads, interrupts, writes)| Splits {
        reads,
        interrupts,
        writes,
    })
}

/// Bodies up to a few KiB; half of them one repeated byte, half random.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..3000),
        (any::<u8>(), 0usize..6000).prop_map(|(byte, len)| vec![byte; len]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Chunked: the wire decodes to the body, in chunks of 1..=capacity, one last chunk.
    #[test]
    fn chunked_round_trip(
        body in body(),
        capacity in prop_oneof![1usize..=64, 1usize..=4096],
        splits in splits(),
        decode_splits in sizes(),
    ) {
        checks::round_trip(&body, capacity, &splits, &decode_splits, false);
    }

    /// Content-Length: the wire after the head is the body, byte for byte.
    #[test]
    fn content_length_round_trip(
        body in body(),
        capacity in prop_oneof![1usize..=64, 1usize..=4096],
        splits in splits(),
    ) {
        checks::round_trip(&body, capacity, &splits, &[], true);
    }

    /// The decoder gives the same events for any feeding of arbitrary bytes.
    #[test]
    fn dechunking_does_not_depend_on_splits(split in 1u8..64, input in vec(any::<u8>(), 0..512)) {
        let mut data = vec![split];
        data.extend_from_slice(&input);
        checks::dechunk(&data);
    }

    /// Well-formed chunked bodies (any sizes, extensions, trailers) decode to their data and
    /// trailers however they are fed, alone and after a response head.
    #[test]
    fn well_formed_chunked_bodies_decode(
        chunks in vec(vec(any::<u8>(), 1..200), 0..10),
        zeros in 0usize..3,
        feed in sizes(),
        split in 1u8..64,
    ) {
        let mut wire = Vec::new();
        let mut body = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let ext = if i % 2 == 0 { ";x=y" } else { "" };
            wire.extend_from_slice(format!("{}{:X}{ext}\r\n", "0".repeat(zeros), chunk.len()).as_bytes());
            wire.extend_from_slice(chunk);
            wire.extend_from_slice(b"\r\n");
            body.extend_from_slice(chunk);
        }
        wire.extend_from_slice(b"0\r\nT: v\r\n\r\n");
        let decoded = checks::dechunk_in_splits(&wire, &feed, &chunkwire::Limits::default());
        prop_assert_eq!(decoded.error, None);
        prop_assert!(decoded.ended);
        prop_assert_eq!(decoded.data, body);
        prop_assert_eq!(decoded.sizes.len(), chunks.len() + 1);
        prop_assert_eq!(decoded.trailers, vec![(b"T".to_vec(), b"v".to_vec())]);
        prop_assert_eq!(decoded.leftover, 0);
        let mut data = vec![split];
        data.extend_from_slice(&wire);
        checks::dechunk(&data);
        let mut response = b"\x00HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        response.extend_from_slice(&wire);
        checks::response_head(&response);
    }
}

/// The properties can fail: a corrupted wire does not pass for the body.
#[test]
fn a_corrupted_wire_is_caught() {
    let body = b"hello, chunked world".to_vec();
    let splits = Splits::default();
    let mut wire = checks::send_through_exchange(&body, 4, &splits, false);
    let decoded = checks::dechunk_in_splits(&wire, &[3], &chunkwire::Limits::default());
    assert_eq!(decoded.data, body);
    // A doubled last chunk leaves bytes after the end; a flipped data byte changes the data.
    wire.extend_from_slice(b"0\r\n\r\n");
    let doubled = checks::dechunk_in_splits(&wire, &[3], &chunkwire::Limits::default());
    assert_eq!(doubled.leftover, 5);
    wire[3] ^= 0x20;
    let flipped = checks::dechunk_in_splits(&wire, &[], &chunkwire::Limits::default());
    assert_ne!(flipped.data, body);
}
