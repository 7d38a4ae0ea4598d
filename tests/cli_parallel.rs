//! `chunkwire upload -Z`: several files at once on one thread, at most `--parallel-max` at a
//! time, a result line each, and an exit status that is 0 only when every upload succeeded.
#![cfg(feature = "cli")]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use chunkwire::sink::Sink;

fn chunkwire(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chunkwire"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Files of different sizes and contents in a directory of their own.
struct Files {
    dir: PathBuf,
    paths: Vec<String>,
    contents: Vec<Vec<u8>>,
}

impl Files {
    fn new(test: &str, count: usize) -> Files {
        let dir = std::env::temp_dir().join(format!("chunkwire-z-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut paths = Vec::new();
        let mut contents = Vec::new();
        for i in 0..count {
            let bytes: Vec<u8> = (0..(i + 1) * 150_001).map(|b| (b * 31 + i) as u8).collect();
            let path = dir.join(format!("part-{i}.bin"));
            std::fs::write(&path, &bytes).unwrap();
            paths.push(path.to_str().unwrap().to_owned());
            contents.push(bytes);
        }
        Files {
            dir,
            paths,
            contents,
        }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn every_file_arrives_whole_with_a_result_line_each() {
    let files = Files::new("whole", 6);
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let out = files.dir.join("responses");
    let mut args = vec![
        "upload",
        "-Z",
        "--parallel-max",
        "3",
        "-o",
        out.to_str().unwrap(),
    ];
    let url = sink.url("/z/");
    args.push(&url);
    args.extend(files.paths.iter().map(String::as_str));
    let output = chunkwire(&args);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.contains(": 200 OK")).count(),
        6,
        "{err}"
    );
    let mut crcs = HashMap::new();
    for _ in 0..6 {
        let report = sink.next_report(Duration::from_secs(10)).unwrap();
        crcs.insert(report.target.clone(), (report.bytes, report.crc32));
    }
    for (i, bytes) in files.contents.iter().enumerate() {
        let (len, crc) = crcs[&format!("/z/part-{i}.bin")];
        assert_eq!(len, bytes.len() as u64);
        assert_eq!(crc, crc32fast::hash(bytes), "part {i}");
    }
    // Each response body whole, one after another.
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(written.lines().count(), 6, "{written}");
    assert!(
        written
            .lines()
            .all(|l| l.starts_with('{') && l.ends_with('}'))
    );
}

/// A server that answers `status` to paths containing `bad`, 200 to others, after reading
/// each chunked body; it counts connections open at once.
fn server(most: Arc<AtomicUsize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let open = Arc::new(AtomicUsize::new(0));
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let (open, most) = (Arc::clone(&open), Arc::clone(&most));
            thread::spawn(move || {
                most.fetch_max(open.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut seen = Vec::new();
                let mut buf = [0u8; 65536];
                while !seen.ends_with(b"\r\n0\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                thread::sleep(Duration::from_millis(50));
                let bad = seen.windows(3).take(200).any(|w| w == b"bad");
                let answer: &[u8] = if bad {
                    b"HTTP/1.1 500 Broken\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                };
                // Counted out before the answer: once it is sent, the client may connect
                // again before this thread runs on.
                open.fetch_sub(1, Ordering::SeqCst);
                let _ = stream.write_all(answer);
            });
        }
    });
    url
}

#[test]
fn the_limit_holds_and_one_failure_sets_the_exit_status() {
    let files = Files::new("limit", 7);
    let bad = files.dir.join("bad.bin");
    std::fs::write(&bad, b"this one fails").unwrap();
    let most = Arc::new(AtomicUsize::new(0));
    let url = server(Arc::clone(&most));
    let mut args = vec!["upload", "-Z", "--parallel-max", "2", "-f", "-s", &url];
    args.extend(files.paths.iter().map(String::as_str));
    args.push(bad.to_str().unwrap());
    let output = chunkwire(&args);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(22), "{err}");
    assert!(err.contains("bad.bin") && err.contains("500"), "{err}");
    assert!(err.contains("1 of 8 uploads failed"), "{err}");
    // -s: only the failure has a line, and the summary.
    assert_eq!(err.lines().count(), 2, "{err}");
    assert_eq!(most.load(Ordering::SeqCst), 2);
}

#[test]
fn a_pipe_or_a_trace_with_z_is_refused_before_anything_is_sent() {
    let files = Files::new("refused", 1);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let mut child = Command::new(env!("CARGO_BIN_EXE_chunkwire"))
        .args(["upload", "-Z", &url, "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The command may refuse (and exit) before it reads: a broken pipe is fine here.
    let _ = child.stdin.take().unwrap().write_all(b"piped");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("regular files only"));
    let trace = chunkwire(&["upload", "-Z", "--trace-ascii", "-", &url, &files.paths[0]]);
    assert_eq!(trace.status.code(), Some(2), "{}", stderr(&trace));
    assert!(listener.accept().is_err(), "nothing may connect");
}

#[test]
fn more_files_than_open_file_descriptors_upload_at_once() {
    // Each file is opened when its upload first reads it, and the set is fed as it
    // drains: 300 files need no more descriptors than the uploads running at once.
    let files = Files::new("many", 0);
    let mut paths = Vec::new();
    for i in 0..300 {
        let path = files.dir.join(format!("f{i}"));
        std::fs::write(&path, format!("file number {i}")).unwrap();
        paths.push(path.to_str().unwrap().to_owned());
    }
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let script = format!(
        "ulimit -n 48 && exec \"$0\" upload -Z --parallel-max 8 -s -o /dev/null {} \"$@\"",
        sink.url("/fd/")
    );
    let output = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_chunkwire"))
        .args(&paths)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let mut seen = 0;
    while let Some(report) = sink.next_report(Duration::from_secs(5)) {
        let i: usize = report.target.trim_start_matches("/fd/f").parse().unwrap();
        assert_eq!(report.bytes, format!("file number {i}").len() as u64);
        seen += 1;
        if seen == 300 {
            break;
        }
    }
    assert_eq!(seen, 300);
}

#[test]
fn the_progress_line_shows_the_total_of_all_files() {
    let files = Files::new("progress", 0);
    let mut paths = Vec::new();
    for name in ["a", "b"] {
        let path = files.dir.join(name);
        std::fs::write(&path, vec![7u8; 3_000_000]).unwrap();
        paths.push(path.to_str().unwrap().to_owned());
    }
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let url = sink.url("/total/");
    let mut args = vec!["upload", "-Z", "-#", "-o", "/dev/null", &url];
    args.extend(paths.iter().map(String::as_str));
    let output = chunkwire(&args);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    // 6,000,000 bytes in all, one line for both uploads.
    assert!(err.contains("5.7 MiB / 5.7 MiB"), "{err}");
    assert!(
        !err.contains("/ 2.9 MiB"),
        "a line of one file's size: {err}"
    );
}

#[test]
fn max_time_ends_a_z_upload_that_gets_no_answer() {
    // -m applies to each upload of -Z: one to a server that never answers ends at 1 s with
    // curl's 28; uploads of another run to the sink finish meanwhile.
    let files = Files::new("max-time", 3);
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/silent", silent.local_addr().unwrap());
    let held = thread::spawn(move || {
        let (stream, _) = silent.accept().unwrap();
        thread::sleep(Duration::from_millis(2500));
        drop(stream);
    });
    let started = std::time::Instant::now();
    let slow = Command::new(env!("CARGO_BIN_EXE_chunkwire"))
        .args([
            "upload",
            "-Z",
            "-s",
            "-m",
            "1",
            &silent_url,
            &files.paths[2],
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let waited = started.elapsed();
    let url = sink.url("/mt/");
    let fast = chunkwire(&[
        "upload",
        "-Z",
        "-s",
        "-m",
        "1",
        &url,
        &files.paths[0],
        &files.paths[1],
    ]);
    assert_eq!(slow.status.code(), Some(28), "{}", stderr(&slow));
    assert!(stderr(&slow).contains("maximum time"), "{}", stderr(&slow));
    assert!(waited < Duration::from_millis(2400), "took {waited:?}");
    assert_eq!(fast.status.code(), Some(0), "{}", stderr(&fast));
    held.join().unwrap();
}

#[test]
fn the_total_progress_survives_an_upload_sent_again_after_a_307() {
    // A 307 sends the file again from its start: its progress starts again from 0, and
    // the total line must not count it twice or underflow.
    let files = Files::new("progress-307", 1);
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let landing = sink.url("/landed");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/first", listener.local_addr().unwrap());
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 65536];
        while !seen.ends_with(b"\r\n0\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        let answer =
            format!("HTTP/1.1 307 Again\r\nLocation: {landing}\r\nContent-Length: 0\r\n\r\n");
        let _ = stream.write_all(answer.as_bytes());
    });
    let output = chunkwire(&[
        "upload",
        "-Z",
        "-#",
        "-L",
        "-o",
        "/dev/null",
        &url,
        &files.paths[0],
    ]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    let report = sink.next_report(Duration::from_secs(10)).unwrap();
    assert_eq!(report.bytes, files.contents[0].len() as u64);
    // 150,001 bytes once: the line never shows more than the file's size.
    assert!(err.contains("146.5 KiB / 146.5 KiB"), "{err}");
}
