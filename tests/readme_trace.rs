//! The trace walked through in README.md is what the tool prints today: this re-runs the
//! same upload and compares the request part of the trace, times and port aside.
#![cfg(feature = "cli")]

use std::process::Command;

use chunkwire::sink::Sink;

/// The trace lines of bytes sent, without the time column, with the port replaced.
fn sent_lines(trace: &str, port: u16) -> Vec<String> {
    trace
        .lines()
        .filter(|line| line.contains(" > ") && !line.contains(" > * "))
        .map(|line| {
            line.split_once(" > ")
                .unwrap()
                .1
                .replace(&port.to_string(), "PORT")
        })
        .collect()
}

#[test]
fn the_readme_trace_is_what_the_tool_prints() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme
        .split("<!-- trace:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- trace:end -->").next())
        .expect("README.md has a trace block");
    let expected = sent_lines(block, 18081);
    assert!(
        expected.len() > 10,
        "the README block holds the request: {expected:?}"
    );

    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let file = std::env::temp_dir().join(format!("chunkwire-readme-{}.txt", std::process::id()));
    std::fs::write(&file, "hello world").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_chunkwire"))
        .args([
            "upload",
            "--chunk-size",
            "4",
            "--trailer",
            "X-Demo: done",
            "--trace-ascii",
            "-",
        ])
        .args(["-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{}/up", sink.addr().port()))
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    let actual = sent_lines(&printed, sink.addr().port());
    assert_eq!(
        actual, expected,
        "README.md's trace is out of date; regenerate it"
    );
}
