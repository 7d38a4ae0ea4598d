//! Property tests: encode/decode round trips with arbitrary data, chunk capacities, read
//! and write splits and interruptions, chunked and with Content-Length; and the chunked
//! decoder against splits of arbitrary input. The properties are the fuzz checks, fed
//! structured inputs.

#[path = "../fuzz/checks.rs"]
mod checks;

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn chunked_round_trip(
        body in proptest::collection::vec(any::<u8>(), 0..3000),
        capacity in 1usize..=4096,
        read_max in 1usize..=5000,
        write_max in 1usize..=5000,
        interrupt_every in 0usize..5,
    ) {
        let wire = checks::send_through_exchange(&body, capacity, read_max, write_max, interrupt_every, false);
        // The framer's own property, through the whole-byte input form the fuzzer uses.
        let mut input = vec![capacity.min(255) as u8, read_max.min(255) as u8, write_max.min(255) as u8, interrupt_every as u8];
        input.extend_from_slice(&body);
        checks::framer_roundtrip(&input);
        prop_assert!(wire.ends_with(b"0\r\n\r\n"));
        prop_assert!(wire.len() >= body.len() + 5);
    }

    #[test]
    fn content_length_round_trip(
        body in proptest::collection::vec(any::<u8>(), 0..3000),
        capacity in 1usize..=4096,
        read_max in 1usize..=5000,
        write_max in 1usize..=5000,
    ) {
        let wire = checks::send_through_exchange(&body, capacity, read_max, write_max, 3, true);
        prop_assert_eq!(wire, body);
    }

    #[test]
    fn dechunking_does_not_depend_on_splits(split in 1u8..64, input in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut data = vec![split];
        data.extend_from_slice(&input);
        checks::dechunk(&data);
    }

    #[test]
    fn well_formed_chunked_bodies_decode(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..200), 0..10), split in 1u8..64) {
        let mut wire = Vec::new();
        let mut body = Vec::new();
        for chunk in &chunks {
            wire.extend_from_slice(format!("{:X};x=y\r\n", chunk.len()).as_bytes());
            wire.extend_from_slice(chunk);
            wire.extend_from_slice(b"\r\n");
            body.extend_from_slice(chunk);
        }
        wire.extend_from_slice(b"0\r\nT: v\r\n\r\n");
        let mut data = vec![split];
        data.extend_from_slice(&wire);
        checks::dechunk(&data);
        let mut response = b"\x00HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        response.extend_from_slice(&wire);
        checks::response_head(&response);
    }
}
