//! The quick mode proves every contender works and the table and the chart are produced.
//! Needs the release `chunkwire` binary: `cargo build --release` first.

use std::path::Path;
use std::process::Command;

#[test]
fn quick_mode_runs_every_contender() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let chunkwire = root.join("target/release/chunkwire");
    assert!(chunkwire.exists(), "build it first: cargo build --release");
    let work = std::env::temp_dir().join(format!("chunkwire-compare-quick-{}", std::process::id()));
    let chart = work.join("chart.svg");
    let output = Command::new(env!("CARGO_BIN_EXE_chunkwire-compare"))
        .arg("--quick")
        .arg("--chunkwire")
        .arg(&chunkwire)
        .arg("--work-dir")
        .arg(&work)
        .arg("--chart")
        .arg(&chart)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8(output.stdout).unwrap();
    let mut names = vec![
        "raw socket |",
        "chunkwire chunked |",
        "chunkwire Content-Length |",
        "reqwest chunked |",
        "reqwest Content-Length |",
        "raw socket TLS |",
        "chunkwire chunked TLS |",
        "reqwest chunked TLS |",
        "chunkwire --chunk-size 1M |",
    ];
    if Command::new("curl").arg("--version").output().is_ok() {
        names.extend(["curl chunked |", "curl Content-Length TLS |"]);
    }
    for name in names {
        assert!(
            table.contains(&format!("| {name}")),
            "no row for {name}\n{table}"
        );
    }
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("reqwest chunked"),
        "{svg}"
    );
    let _ = std::fs::remove_dir_all(&work);
}
