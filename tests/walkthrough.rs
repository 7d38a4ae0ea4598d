//! docs/wire-walkthrough.md is what `chunkwire walkthrough` prints today, and every command
//! it shows works: the setup commands make the files, the sink command starts a sink, and
//! each upload command (trace and capture) succeeds against a sink with the same limit.
#![cfg(feature = "cli")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use chunkwire::sink::Sink;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/wire-walkthrough.md");
const BIN: &str = env!("CARGO_BIN_EXE_chunkwire");
const SHOWN: &str = "127.0.0.1:18081";
const SHOWN_PROXY: &str = "127.0.0.1:3128";

/// A port nothing listens on now (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `port`, for up to 10 seconds.
fn wait_for_listener(port: u16) -> bool {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chunkwire-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_walkthrough_is_what_the_tool_prints() {
    let dir = scratch("walkthrough-doc");
    let out = dir.join("walkthrough.md");
    let run = Command::new(BIN)
        .args(["walkthrough", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let printed = std::fs::read_to_string(&out).unwrap();
    let checked_in = std::fs::read_to_string(DOC).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    for (n, (now, then)) in printed.lines().zip(checked_in.lines()).enumerate() {
        assert_eq!(
            now,
            then,
            "docs/wire-walkthrough.md differs from the tool's output at line {}; \
             regenerate it: cargo run -- walkthrough -o docs/wire-walkthrough.md",
            n + 1
        );
    }
    assert_eq!(
        printed, checked_in,
        "docs/wire-walkthrough.md differs from the tool's output in length; regenerate it"
    );
}

/// The lines of the document's ```sh blocks.
fn shell_lines(doc: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut inside = false;
    for line in doc.lines() {
        match (inside, line) {
            (false, "```sh") => inside = true,
            (true, "```") => inside = false,
            (true, line) => lines.push(line.to_owned()),
            _ => {}
        }
    }
    lines
}

/// Splits a command line as the shell would, for the quoting the document uses (words,
/// single quotes).
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quoted = false;
    for c in line.chars() {
        match (quoted, c) {
            (false, '\'') => {
                quoted = true;
                word.get_or_insert_with(String::new);
            }
            (true, '\'') => quoted = false,
            (false, ' ') => words.extend(word.take()),
            (_, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    assert!(!quoted, "unbalanced quote in {line:?}");
    words.extend(word);
    words
}

/// Runs `line` as a command (its first word `chunkwire` meaning this build) in `dir`.
fn run_words(line: &str, dir: &Path, ports: (u16, u16)) -> std::process::Output {
    let words: Vec<String> = words(line)
        .into_iter()
        .map(|w| {
            w.replace(SHOWN, &format!("127.0.0.1:{}", ports.0))
                .replace(SHOWN_PROXY, &format!("127.0.0.1:{}", ports.1))
        })
        .collect();
    let program = if words[0] == "chunkwire" {
        BIN
    } else {
        &words[0]
    };
    let mut command = Command::new(program);
    // The uploads go to the loopback sink directly, whatever the environment's proxy says.
    for name in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        command.env_remove(name);
    }
    command
        .args(&words[1..])
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// A child process, killed when this goes (also when an assertion fails).
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tshark_installed() -> bool {
    Command::new("tshark")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn every_command_in_the_walkthrough_works() {
    let doc = std::fs::read_to_string(DOC).unwrap();
    let lines = shell_lines(&doc);
    assert!(lines.len() > 10, "{lines:?}");
    let dir = scratch("walkthrough-commands");
    let sink = Sink::bind("127.0.0.1:0")
        .unwrap()
        .max_body(1024)
        .spawn()
        .unwrap();
    let port = sink.addr().port();
    let pcap_supported = {
        let help = Command::new(BIN).args(["help", "upload"]).output().unwrap();
        String::from_utf8_lossy(&help.stdout).contains("--trace-pcap")
    };
    let tshark = tshark_installed();
    // The proxy the document tells readers to run, on a free port (the walkthrough itself
    // runs its own): the proxy exchanges' commands go through it when it is installed.
    let proxy_port = free_port();
    let mut proxy: Option<Stopped> = None;
    let (mut uploads, mut captures, mut dissected) = (0, 0, 0);
    // The request-target of the last capture command: its tshark must find that request.
    let mut captured_target = String::new();
    for line in &lines {
        let first = line.split(' ').next().unwrap();
        match first {
            "chunkwire" if line.starts_with("chunkwire sink ") => {
                // It serves until stopped: it must start listening, on a free port here.
                let words: Vec<String> = words(line)
                    .into_iter()
                    .map(|w| w.replace(SHOWN, "127.0.0.1:0"))
                    .collect();
                let mut child = Command::new(BIN)
                    .args(&words[1..])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                let mut first_line = String::new();
                BufReader::new(child.stderr.take().unwrap())
                    .read_line(&mut first_line)
                    .unwrap();
                let _ = child.kill();
                let _ = child.wait();
                assert!(
                    first_line.contains("listening on http://127.0.0.1:"),
                    "{line}: {first_line}"
                );
            }
            "pproxy" => {
                let words: Vec<String> = words(line)
                    .into_iter()
                    .map(|w| w.replace(SHOWN_PROXY, &format!("127.0.0.1:{proxy_port}")))
                    .collect();
                match Command::new(&words[0])
                    .args(&words[1..])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                {
                    Ok(child) => {
                        proxy = Some(Stopped(child));
                        assert!(wait_for_listener(proxy_port), "{line} does not listen");
                    }
                    Err(e) => {
                        eprintln!("not run ({e}), and the commands through it neither: {line}")
                    }
                }
            }
            "chunkwire" if line.contains(" -x ") && proxy.is_none() => {
                eprintln!("not run, the proxy is not installed: {line}");
            }
            "chunkwire" => {
                let capture = line.contains("--trace-pcap");
                if capture && !pcap_supported {
                    eprintln!("not run, this build has no --trace-pcap: {line}");
                    continue;
                }
                let output = run_words(line, &dir, (port, proxy_port));
                assert!(
                    output.status.success(),
                    "{line}: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                if capture {
                    captures += 1;
                    let url = words(line)
                        .into_iter()
                        .find(|w| w.starts_with("http://127.0.0.1:18081/"))
                        .expect("the capture command has the sink's URL");
                    captured_target = url["http://127.0.0.1:18081".len()..].to_owned();
                } else {
                    uploads += 1;
                    assert!(
                        String::from_utf8_lossy(&output.stdout).contains("> * connected to"),
                        "{line} printed no trace"
                    );
                }
            }
            "tshark" => {
                let file = words(line)[2].clone();
                if !dir.join(&file).exists() {
                    assert!(!pcap_supported, "{line}: {file} was not written");
                    continue;
                }
                if !tshark {
                    eprintln!("not run, tshark is not installed: {line}");
                    continue;
                }
                let port_line = line
                    .replace("port==18081", &format!("port=={port}"))
                    .replace("port==3128", &format!("port=={proxy_port}"));
                let output = run_words(&port_line, &dir, (port, proxy_port));
                let text = String::from_utf8_lossy(&output.stdout);
                assert!(output.status.success(), "{line}: {text}");
                // The request itself is dissected (inside the tunnel, too), not only the
                // response or the CONNECT.
                let target = format!("Request URI: {captured_target}\n");
                assert!(text.contains(&target), "{line} shows no {target}: {text}");
                dissected += 1;
            }
            // A window on the desktop: what it opens is checked by tshark above.
            "wireshark" => {}
            // The setup: the sample files.
            _ => {
                let status = Command::new("sh")
                    .args(["-c", line])
                    .current_dir(&dir)
                    .status()
                    .unwrap();
                assert!(status.success(), "{line}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    // Eight exchanges, two of them through the proxy.
    let expected = if proxy.is_some() { 8 } else { 6 };
    assert_eq!(uploads, expected, "every exchange's command ran");
    if pcap_supported {
        assert_eq!(captures, expected, "every exchange's capture command ran");
        if tshark {
            assert_eq!(dissected, expected, "tshark read every capture");
        }
    }
}
