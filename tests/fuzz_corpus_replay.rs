//! Replays every checked-in fuzz input (corpus and any crash artifacts) through the same
//! checks the fuzz targets run, so `cargo test` on stable guards what fuzzing found.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for dir in [
        root.join("corpus").join(target),
        root.join("artifacts").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(
                outcome.is_ok(),
                "{target}: {} fails its check",
                path.display()
            );
            replayed += 1;
        }
    }
    assert!(replayed >= 3, "{target}: only {replayed} corpus files");
}

#[test]
fn response_head_corpus() {
    replay("response_head", checks::response_head);
}

#[test]
fn dechunk_corpus() {
    replay("dechunk", checks::dechunk);
}

#[test]
fn request_head_corpus() {
    replay("request_head", checks::request_head);
}

#[test]
fn framer_roundtrip_corpus() {
    replay("framer_roundtrip", checks::framer_roundtrip);
}

#[test]
fn url_corpus() {
    replay("url", checks::url);
}

#[test]
fn exchange_corpus() {
    replay("exchange", checks::exchange);
}

#[test]
fn conn_corpus() {
    replay("conn", checks::conn);
}

#[test]
fn proxy_corpus() {
    replay("proxy", checks::proxy);
}
