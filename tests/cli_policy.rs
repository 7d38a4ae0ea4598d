//! The command's answers to servers that redirect or go silent: a redirect the body cannot
//! follow is exit 65 (it used to exit 0 with the 307 as the answer, even with `-f`), a
//! redirect with `--max-redirs 0` is 47, and a server that takes the body and closes without
//! answering is 52, with the body sent once.
#![cfg(feature = "cli")]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

/// Serves one connection: reads the head and, for a chunked body, up to its last chunk;
/// then writes `reply` (or closes, if empty). Returns the URL and whether a second
/// connection came within a moment after it.
fn one_shot(reply: &'static str) -> (String, thread::JoinHandle<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/up", listener.local_addr().unwrap());
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 8192];
        while !seen.ends_with(b"0\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "closed before the last chunk");
            seen.extend_from_slice(&buf[..n]);
        }
        stream.write_all(reply.as_bytes()).unwrap();
        drop(stream);
        listener.set_nonblocking(true).unwrap();
        thread::sleep(Duration::from_millis(300));
        listener.accept().is_ok()
    });
    (url, handle)
}

fn upload_stdin(args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chunkwire"))
        .arg("upload")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_redirect_a_piped_body_cannot_follow_exits_65() {
    for extra in [&[][..], &["-f"][..]] {
        let (url, server) = one_shot(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n",
        );
        let mut args = vec!["-L", "-s"];
        args.extend_from_slice(extra);
        args.extend([url.as_str(), "-"]);
        let output = upload_stdin(&args, b"a body from a pipe");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(65), "{extra:?}: {stderr}");
        assert!(stderr.contains("cannot be sent again"), "{stderr}");
        assert!(
            !server.join().unwrap(),
            "nothing may go to the server again"
        );
    }
}

#[test]
fn a_redirect_with_max_redirs_zero_exits_47() {
    let (url, server) =
        one_shot("HTTP/1.1 302 Found\r\nLocation: /next\r\nContent-Length: 0\r\n\r\n");
    let output = upload_stdin(&["-L", "--max-redirs", "0", "-s", &url, "-"], b"x");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(47), "{stderr}");
    server.join().unwrap();
}

#[test]
fn a_server_that_closes_without_answering_exits_52_and_gets_the_body_once() {
    let (url, server) = one_shot("");
    let file = std::env::temp_dir().join(format!("chunkwire-policy-{}", std::process::id()));
    std::fs::write(&file, vec![7u8; 100_000]).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_chunkwire"))
        .args(["upload", "-X", "POST", "-s", &url, file.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(52), "{stderr}");
    assert!(stderr.contains("without a complete response"), "{stderr}");
    assert!(!server.join().unwrap(), "the POST was sent a second time");
}

#[test]
fn standard_input_in_non_blocking_mode_is_waited_for() {
    // A parent that set O_NONBLOCK on the pipe it hands down (node, some shells) made reads
    // fail with EAGAIN; the upload must wait for the data instead.
    use std::os::unix::net::UnixStream;
    let sink = chunkwire::sink::Sink::bind("127.0.0.1:0")
        .unwrap()
        .spawn()
        .unwrap();
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    theirs.set_nonblocking(true).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_chunkwire"))
        .args(["upload", "-s", &sink.url("/nb"), "-"])
        .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
            theirs,
        )))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for piece in [&b"first "[..], b"second ", b"third"] {
        thread::sleep(Duration::from_millis(150));
        ours.write_all(piece).unwrap();
    }
    drop(ours);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report = sink.next_report(Duration::from_secs(5)).expect("a report");
    assert_eq!(report.bytes, 18, "{stderr}");
}

#[test]
fn file_names_become_one_encoded_path_segment_each() {
    let sink = chunkwire::sink::Sink::bind("127.0.0.1:0")
        .unwrap()
        .spawn()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("chunkwire-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let names = ["rep#1.bin", "q?x=1.bin", "pct%41.bin", "été.bin"];
    let paths: Vec<String> = names
        .iter()
        .map(|name| {
            let path = dir.join(name);
            std::fs::write(&path, name.as_bytes()).unwrap();
            path.to_str().unwrap().to_owned()
        })
        .collect();
    let url = sink.url("/dir/");
    let mut args = vec!["upload", "-s", "-o", "/dev/null", url.as_str()];
    args.extend(paths.iter().map(String::as_str));
    let output = Command::new(env!("CARGO_BIN_EXE_chunkwire"))
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let targets: Vec<String> = (0..names.len())
        .map(|_| sink.next_report(Duration::from_secs(5)).unwrap().target)
        .collect();
    assert_eq!(
        targets,
        [
            "/dir/rep%231.bin",
            "/dir/q%3Fx%3D1.bin",
            "/dir/pct%2541.bin",
            "/dir/%C3%A9t%C3%A9.bin"
        ]
    );
}

#[test]
fn verbose_output_never_prints_a_password_from_a_location() {
    let (url, server) = one_shot(
        "HTTP/1.1 302 Found\r\nLocation: http://user:hunter2@example.invalid/x\r\nContent-Length: 0\r\n\r\n",
    );
    let output = upload_stdin(&["-v", "-s", &url, "-"], b"x");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("user:***@example.invalid"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    server.join().unwrap();
}

#[test]
fn help_to_a_full_standard_output_is_exit_23_not_a_panic() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_chunkwire"))
        .arg("--help")
        .stdout(Stdio::from(full))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(23), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_early_200_then_a_close_is_exit_55_not_success() {
    // The reproduction: a server answers 200 right after the head and stops reading. The
    // body never arrived, so a script must not see success (curl: 55, "send failure").
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/up", listener.local_addr().unwrap());
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = [0u8; 4096];
        let _ = stream.read(&mut head).unwrap();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
            .unwrap();
        thread::sleep(Duration::from_millis(100));
        // Dropped with unread bytes: the kernel resets the connection.
    });
    let file = std::env::temp_dir().join(format!("chunkwire-early-{}", std::process::id()));
    std::fs::write(&file, vec![5u8; 50 << 20]).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_chunkwire"))
        .args(["upload", "-s", &url, file.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(55), "{stderr}");
    assert!(
        stderr.contains("answered 200 before the body was complete"),
        "{stderr}"
    );
    server.join().unwrap();
}
