//! The quick mode proves every contender works, in every part (one upload, uploads at once,
//! many small uploads), and that the tables, the targets and the chart are produced. Needs
//! the release `chunkwire` binary: `cargo build --release` first. Figures are not checked:
//! the targets are reported by the benchmark, not asserted by a timed test.

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
    let curl = Command::new("curl").arg("--version").output().is_ok();
    let mut names = vec![
        "raw socket |",
        "chunkwire chunked |",
        "chunkwire Content-Length |",
        "reqwest chunked |",
        "reqwest Content-Length |",
        "raw socket TLS |",
        "chunkwire chunked TLS |",
        "chunkwire chunked, --trace-pcap /dev/null |",
        "chunkwire chunked TLS, --trace-pcap /dev/null |",
        "reqwest chunked TLS |",
        "chunkwire --chunk-size 1M |",
    ];
    if curl {
        names.extend(["curl chunked |", "curl Content-Length TLS |"]);
    }
    for name in names {
        assert!(
            table.contains(&format!("| {name}")),
            "no row for {name}\n{table}"
        );
    }
    // Uploads at once: every contender at N = 1 and 10, plain and TLS. chunkwire's rows
    // have figures once its CLI has -Z, and say "not available yet" until then.
    let section = |title: &str| {
        let start = table
            .find(title)
            .unwrap_or_else(|| panic!("no section {title}\n{table}"));
        let rest = &table[start + title.len()..];
        rest[..rest.find("\n#").unwrap_or(rest.len())].to_string()
    };
    for title in ["### 1 MiB each, plain TCP", "### 1 MiB each, TLS"] {
        let rows = section(title);
        let mut contenders = vec![
            "chunkwire -Z",
            "reqwest current-thread",
            "reqwest multi-thread",
        ];
        if curl {
            contenders.push("curl -Z");
        }
        for contender in contenders {
            for n in [1, 10] {
                let row = format!("| {contender} | {n} |");
                assert!(rows.contains(&row), "no row {row} under {title}\n{rows}");
            }
        }
    }
    let small = section("## Many small uploads, plain TCP");
    let mut contenders = vec![
        "chunkwire, one connection",
        "chunkwire -Z, 10 connections",
        "reqwest, one connection",
        "reqwest, 10 connections",
        "reqwest, whole file (Content-Length), one connection",
    ];
    if curl {
        contenders.extend(["curl, one connection", "curl -Z, 10 connections"]);
    }
    for contender in contenders {
        let row = format!("| {contender} |");
        assert!(small.contains(&row), "no row {row}\n{small}");
    }
    // The rows that can run today have figures (a number where a reason would be).
    for row in [
        "| chunkwire, one connection | ",
        "| reqwest, 10 connections | ",
    ] {
        let line = small.lines().find(|l| l.starts_with(row)).unwrap();
        assert!(
            line[row.len()..].starts_with(|c: char| c.is_ascii_digit()),
            "{line}"
        );
    }
    // The form part: every contender has a row with figures (the Python ones need
    // benches/compare/requirements.txt, which .ci/run installs), and the targets are checked.
    let form = section("## A form: a 4 MiB file part and two text fields, plain TCP");
    let mut contenders = vec![
        "chunkwire, plain upload (Content-Length)",
        "chunkwire -F",
        "requests files=",
        "requests-toolbelt MultipartEncoder",
        "reqwest multipart",
    ];
    if curl {
        contenders.push("curl -F");
    }
    for contender in contenders {
        let row = format!("| {contender} | ");
        let line = form
            .lines()
            .find(|l| l.starts_with(&row))
            .unwrap_or_else(|| panic!("no row {row}\n{form}"));
        assert!(
            line[row.len()..].starts_with(|c: char| c.is_ascii_digit()),
            "{line}"
        );
    }
    let form_targets = section("### Form targets");
    assert!(
        form_targets.contains("peak RSS within 0.25 MiB of the plain upload"),
        "{form_targets}"
    );
    let targets = section("## Targets");
    assert!(targets.contains("small uploads per second"), "{targets}");
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("reqwest chunked"),
        "{svg}"
    );
    let _ = std::fs::remove_dir_all(&work);
}
