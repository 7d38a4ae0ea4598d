//! `SSLKEYLOGFILE`: the CLI appends the TLS secrets of its connections to the file the
//! variable names, as curl does, and those secrets decrypt a capture of the upload that
//! neither chunkwire nor the tests made: tcpdump's, on loopback, read by tshark. The library
//! writes a key log only when asked to.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use chunkwire::sink::Sink;
use chunkwire::{Client, ServerTls, TlsConfig};

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        Scratch(
            std::env::temp_dir().join(format!("chunkwire-keylog-{}-{name}", std::process::id())),
        )
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 + i / 509) as u8).collect()
}

fn tls_sink() -> (ServerTls, chunkwire::sink::RunningSink) {
    let tls = ServerTls::self_signed().unwrap();
    let sink = Sink::bind("127.0.0.1:0")
        .unwrap()
        .with_tls(tls.clone())
        .spawn()
        .unwrap();
    (tls, sink)
}

/// Checks that `log` holds NSS key log lines of TLS sessions: `label client_random secret`,
/// both in hex, the random 32 bytes.
fn assert_key_log_lines(log: &str) -> usize {
    let mut sessions = std::collections::HashSet::new();
    for line in log.lines().filter(|l| !l.starts_with('#')) {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 3, "not a key log line: {line:?}");
        assert!(
            [
                "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
                "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                "CLIENT_TRAFFIC_SECRET_0",
                "SERVER_TRAFFIC_SECRET_0",
                "EXPORTER_SECRET",
                "CLIENT_RANDOM",
            ]
            .contains(&fields[0]),
            "unknown label in {line:?}"
        );
        assert_eq!(fields[1].len(), 64, "{line:?}");
        assert!(
            fields[1..]
                .iter()
                .all(|f| f.bytes().all(|b| b.is_ascii_hexdigit()))
        );
        sessions.insert(fields[1].to_owned());
    }
    sessions.len()
}

/// tcpdump capturing `port` on loopback into `file`, once it says it is listening; `Err`
/// says why it cannot.
fn start_tcpdump(port: u16, file: &Path) -> Result<Child, String> {
    let mut child = Command::new("tcpdump")
        // Packet by packet: without --immediate-mode some kernels hand over nothing until
        // a buffer fills.
        .args(["-i", "lo", "-U", "--immediate-mode", "-s", "0", "-w"])
        .arg(file)
        .arg(format!("tcp port {port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run tcpdump: {e}"))?;
    let stderr = child.stderr.take().expect("piped");
    let (said, heard) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = said.send(line);
        }
    });
    let mut told = Vec::new();
    loop {
        match heard.recv_timeout(Duration::from_secs(10)) {
            Ok(line) if line.contains("listening on") => return Ok(child),
            Ok(line) => told.push(line),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "tcpdump did not start capturing: {}",
                    told.join(" / ")
                ));
            }
        }
    }
}

/// Stops tcpdump as Ctrl-C would, so that it writes out what it has, once its capture
/// `file` has stopped growing: under load tcpdump reads the kernel's packet ring late, and
/// what it has not read when it stops is lost (a second upload went missing that way).
fn stop_tcpdump(mut child: Child, file: &Path) {
    let size = || std::fs::metadata(file).map_or(0, |m| m.len());
    let mut last = size();
    let mut still = 0;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(50));
        let now = size();
        still = if now == last { still + 1 } else { 0 };
        last = now;
        if still >= 10 {
            break;
        }
    }
    // SAFETY: a plain kill(2) of the child's own pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let waited = (0..100).find_map(|_| {
        std::thread::sleep(Duration::from_millis(50));
        child.try_wait().unwrap()
    });
    if waited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("tcpdump did not stop on SIGINT");
    }
}

fn tshark(
    capture: &Path,
    port: u16,
    options: &[&str],
    filter: &str,
    fields: &[&str],
) -> Vec<Vec<String>> {
    let mut command = Command::new("tshark");
    command
        .arg("-r")
        .arg(capture)
        .args(options)
        .args(["-d", &format!("tcp.port=={port},tls")])
        .args(["-Y", filter, "-T", "fields", "-E", "separator=\t"]);
    for field in fields {
        command.args(["-e", field]);
    }
    let output = command.output().unwrap_or_else(|e| {
        panic!("cannot run tshark ({e}): .ci/run installs Debian's tshark, which this test needs")
    });
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect()
}

fn chunkwire() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chunkwire"));
    command.env_remove("SSLKEYLOGFILE");
    command
}

#[test]
fn the_cli_key_log_decrypts_a_tcpdump_capture_of_the_upload() {
    let (tls, sink) = tls_sink();
    let port = sink.addr().port();
    let ca = Scratch::new("ca.pem");
    std::fs::write(&ca.0, tls.ca_pem()).unwrap();
    let file = Scratch::new("body");
    let data = pattern(30_000);
    std::fs::write(&file.0, &data).unwrap();
    let key_log = Scratch::new("keys.log");
    // Appended to, as curl does: what is there stays.
    std::fs::write(&key_log.0, "# kept\n").unwrap();
    let capture = Scratch::new("tcpdump.pcap");
    let tcpdump = start_tcpdump(port, &capture.0);
    if let Err(why) = &tcpdump {
        eprintln!(
            "\n!!!!! CANNOT CAPTURE ON LOOPBACK ({why}): the decryption of a tcpdump capture \
             with SSLKEYLOGFILE is NOT checked; only the key log itself is !!!!!\n"
        );
    }
    let upload = |url: String| {
        let output = chunkwire()
            .args([
                "upload",
                "-s",
                "--chunk-size",
                "8000",
                "--trailer",
                "X-Sum: 7",
                "--cacert",
            ])
            .arg(&ca.0)
            .arg(url)
            .arg(&file.0)
            .env("SSLKEYLOGFILE", &key_log.0)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    upload(sink.url("/first"));
    let log = std::fs::read_to_string(&key_log.0).unwrap();
    assert!(log.starts_with("# kept\n"), "{log}");
    assert_eq!(assert_key_log_lines(&log), 1, "one session: {log}");
    upload(sink.url("/second"));
    let log = std::fs::read_to_string(&key_log.0).unwrap();
    assert_eq!(
        assert_key_log_lines(&log),
        2,
        "a second session appended: {log}"
    );

    let Ok(tcpdump) = tcpdump else { return };
    stop_tcpdump(tcpdump, &capture.0);
    let keys = format!("tls.keylog_file:{}", key_log.0.display());
    let requests = tshark(
        &capture.0,
        port,
        &["-o", &keys],
        "http.request",
        &[
            "http.request.method",
            "http.request.uri",
            "http.transfer_encoding",
            "http.chunk_size",
            "data.len",
            "http.chunked_trailer_part",
        ],
    );
    let chunks = "8000,8000,8000,6000,0";
    assert_eq!(
        requests,
        [
            [
                "PUT",
                "/first",
                "chunked",
                chunks,
                "30000",
                "X-Sum: 7\\r\\n"
            ],
            [
                "PUT",
                "/second",
                "chunked",
                chunks,
                "30000",
                "X-Sum: 7\\r\\n"
            ]
        ]
    );
    let responses = tshark(
        &capture.0,
        port,
        &["-o", &keys],
        "http.response",
        &["http.response.code"],
    );
    assert_eq!(responses, [["200"], ["200"]]);
    // Without the key log the same capture is records no one can read.
    let hidden = tshark(
        &capture.0,
        port,
        &[],
        "http.request",
        &["http.request.method"],
    );
    assert!(hidden.is_empty(), "{hidden:?}");
}

#[test]
fn a_key_log_file_that_cannot_be_opened_is_said_and_the_upload_goes_on() {
    let (tls, sink) = tls_sink();
    let ca = Scratch::new("ca-bad.pem");
    std::fs::write(&ca.0, tls.ca_pem()).unwrap();
    let file = Scratch::new("body-bad");
    std::fs::write(&file.0, b"abc").unwrap();
    let output = chunkwire()
        .args(["upload", "-s", "--cacert"])
        .arg(&ca.0)
        .arg(sink.url("/"))
        .arg(&file.0)
        .env("SSLKEYLOGFILE", "/nonexistent-dir/keys.log")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warning: SSLKEYLOGFILE /nonexistent-dir/keys.log"),
        "{stderr}"
    );
    assert_eq!(sink.next_report(Duration::from_secs(10)).unwrap().bytes, 3);
}

#[test]
fn the_library_logs_keys_only_when_asked() {
    let key_log = Scratch::new("library.log");
    // SAFETY: the only test of this binary that touches the environment, and the variable
    // is read by rustls alone (when a configuration asks for it), not by C code.
    unsafe {
        std::env::set_var("SSLKEYLOGFILE", &key_log.0);
    }
    let (tls, sink) = tls_sink();
    let builder = || {
        TlsConfig::builder()
            .add_ca_pem(tls.ca_pem().as_bytes())
            .unwrap()
    };
    let upload = |config: TlsConfig| {
        let client = Client::builder().tls_config(config).build().unwrap();
        let mut response = client.upload(&sink.url("/")).send(&b"abc"[..]).unwrap();
        assert_eq!(response.status(), 200);
        response.text().unwrap();
    };
    upload(builder().build().unwrap());
    let untouched = std::fs::read_to_string(&key_log.0).unwrap_or_default();
    assert_eq!(untouched, "", "a key log written unasked");
    upload(builder().key_log_from_env().build().unwrap());
    let log = std::fs::read_to_string(&key_log.0).unwrap();
    assert_eq!(assert_key_log_lines(&log), 1, "{log}");
}
