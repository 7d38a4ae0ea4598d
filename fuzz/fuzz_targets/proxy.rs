//! Fuzz target `proxy`: the check lives in `fuzz/checks.rs`, shared with the corpus replay
//! that `cargo test` runs (`tests/fuzz_corpus_replay.rs`).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::proxy(data));
