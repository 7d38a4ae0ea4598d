//! `chunkwire upload -F` end to end: curl's syntax and curl's layout of the parts, standard
//! input streamed as a part of unknown size, the command-line errors, the trace's labels,
//! and a form of many files under a low open-file limit.
#![cfg(feature = "cli")]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

#[path = "support/multipart.rs"]
mod multipart;
use multipart::{OK, server};

fn chunkwire(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chunkwire"));
    command.args(args).stdin(Stdio::null());
    command
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("chunkwire-form-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str, content: &[u8]) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn dash_f_sends_fields_and_files_laid_out_as_curl_lays_them_out() {
    let dir = TempDir::new("layout");
    let text = dir.file("a.txt", b"hello");
    let odd = dir.file("a;b \"c\".txt", b"odd name");
    let (base, seen) = server(vec![OK.into()]);
    let output = chunkwire(&[
        "upload",
        "-s",
        "-F",
        "x=1",
        "-F",
        &format!("f=@{text};type=text/foo;filename=n.bin"),
        "-F",
        &format!("c=<{text}"),
        "--form-string",
        "w=@not-a-file;type=x",
        "-F",
        &format!("q=@\"{}\"", odd.replace('"', "\\\"")),
        "-F",
        "h=\"a;b\";type=text/html",
        "-F",
        "we\"ird\nname=@-;filename=\"x\\\"y\"",
        &format!("{base}/form"),
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .and_then(|mut child| {
        child.stdin.take().unwrap().write_all(b"from stdin")?;
        child.wait_with_output()
    })
    .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "ok",
        "{}",
        stderr(&output)
    );
    let seen = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        seen.head.starts_with("POST /form HTTP/1.1\r\n"),
        "{}",
        seen.head
    );
    // Standard input has no known size: the form goes chunked.
    assert!(seen.chunked);
    let parts = seen.parts();
    let headers: Vec<Vec<&str>> = parts
        .iter()
        .map(|p| p.headers.iter().map(String::as_str).collect())
        .collect();
    let d = "Content-Disposition: form-data; name=";
    assert_eq!(headers[0], [format!("{d}\"x\"")]);
    assert_eq!(
        headers[1],
        [
            format!("{d}\"f\"; filename=\"n.bin\""),
            "Content-Type: text/foo".into()
        ]
    );
    assert_eq!(headers[2], [format!("{d}\"c\"")]);
    assert_eq!(headers[3], [format!("{d}\"w\"")]);
    assert_eq!(
        headers[4],
        [
            format!("{d}\"q\"; filename=\"a;b %22c%22.txt\""),
            "Content-Type: text/plain".into()
        ]
    );
    assert_eq!(
        headers[5],
        [format!("{d}\"h\""), "Content-Type: text/html".into()]
    );
    assert_eq!(
        headers[6],
        [format!("{d}\"we%22ird%0Aname\"; filename=\"x%22y\"")]
    );
    let data: Vec<&[u8]> = parts.iter().map(|p| p.data.as_slice()).collect();
    assert_eq!(
        data,
        [
            &b"1"[..],
            b"hello",
            b"hello",
            b"@not-a-file;type=x",
            b"odd name",
            b"a;b",
            b"from stdin"
        ]
    );
}

#[test]
fn a_form_of_sized_parts_has_a_content_length_and_x_sets_the_method() {
    let dir = TempDir::new("sized");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let path = dir.file("big.bin", &big);
    let (base, seen) = server(vec![OK.into()]);
    let output = chunkwire(&[
        "upload",
        "-s",
        "--content-length",
        "-X",
        "PUT",
        "--chunk-size",
        "8k",
        "-F",
        "t=v",
        "-F",
        &format!("f=@{path}"),
        &format!("{base}/put"),
    ])
    .output()
    .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let seen = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(seen.head.starts_with("PUT /put "), "{}", seen.head);
    assert!(!seen.chunked);
    assert_eq!(
        seen.header("content-length").unwrap(),
        seen.body.len().to_string()
    );
    assert_eq!(seen.parts()[1].data, big);
    assert_eq!(
        seen.parts()[1].headers[1],
        "Content-Type: application/octet-stream"
    );
}

#[test]
fn form_command_lines_that_cannot_work_are_refused_before_connecting() {
    let dir = TempDir::new("refused");
    let file = dir.file("f.txt", b"x");
    let missing = dir.0.join("missing.txt");
    let missing = missing.to_str().unwrap();
    // Port 9 (discard) on loopback: nothing listens, and nothing must be tried.
    let url = "http://127.0.0.1:9/up";
    let cases: &[(&[&str], u8, &str)] = &[
        (&["-F", "a=1", url, &file], 2, "there is no FILE argument"),
        (
            &["-F", "f=@-", "--content-length", url],
            2,
            "form part \"f\" has no known size",
        ),
        (&["-F", "f=@-", "-F", "g=<-", url], 2, "only one -F part"),
        (
            &["-F", "f=@/dev/null", "--content-length", url],
            2,
            "form part \"f\" has no known size",
        ),
        (&["-F", "x=a;b", url], 2, "unknown parameter \"b\""),
        (&["-F", "x=\"open", url], 2, "no closing quote"),
        (&["-F", "novalue", url], 2, "not of the form 'name=value'"),
        (&["-F", "f=@", url], 2, "no file name after @"),
        (
            &["-F", "f=@a;headers=X: 1", url],
            2,
            ";headers is not supported",
        ),
        (&["-Z", "-F", "a=1", url], 2, "does not go with -F"),
        (&["-F", &format!("f=@{missing}"), url], 26, "missing.txt"),
        (&["-F", &format!("c=<{missing}"), url], 26, "missing.txt"),
    ];
    for (args, code, message) in cases {
        let mut all = vec!["upload", "-s"];
        all.extend_from_slice(args);
        let output = chunkwire(&all).output().unwrap();
        let text = stderr(&output);
        assert_eq!(
            output.status.code(),
            Some(i32::from(*code)),
            "{args:?}: {text}"
        );
        assert!(text.contains(message), "{args:?}: {text}");
        assert!(
            !text.contains("connect"),
            "{args:?} tried to connect: {text}"
        );
    }
}

#[test]
fn the_trace_labels_the_forms_sections() {
    let (base, seen) = server(vec![OK.into()]);
    let output = chunkwire(&[
        "upload",
        "-s",
        "--trace-ascii",
        "-",
        "-F",
        "name=value",
        &format!("{base}/t"),
    ])
    .output()
    .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    seen.recv_timeout(Duration::from_secs(10)).unwrap();
    let trace = String::from_utf8_lossy(&output.stdout);
    for label in ["form boundary", "form part header", "form part data"] {
        assert!(trace.contains(label), "{label} missing from:\n{trace}");
    }
    assert!(
        trace.contains("Content-Disposition: form-data; name=\\\"name\\\""),
        "{trace}"
    );
}

#[test]
fn many_file_parts_go_under_a_low_open_file_limit() {
    let dir = TempDir::new("ulimit");
    let files = 300;
    let mut args = String::new();
    for i in 0..files {
        let path = dir.file(&format!("{i}.txt"), format!("file {i}").as_bytes());
        args.push_str(&format!(" -F 'f{i}=@{path}'"));
    }
    let (base, seen) = server(vec![OK.into()]);
    // 32 descriptors: standard streams, the socket, the loop's poll and waker, one file,
    // and room for the loader; never 300 files at once.
    let script = format!(
        "ulimit -n 32 && exec {} upload -s{args} {base}/many",
        env!("CARGO_BIN_EXE_chunkwire")
    );
    let output = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let seen = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    let parts = seen.parts();
    assert_eq!(parts.len(), files);
    assert_eq!(parts[299].data, b"file 299");
}

#[test]
fn standard_input_redirected_from_a_file_is_a_sized_part() {
    let dir = TempDir::new("stdin-file");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let path = dir.file("in.bin", &data);
    let (base, seen) = server(vec![OK.into()]);
    let output = chunkwire(&[
        "upload",
        "-s",
        "--content-length",
        "-F",
        "f=@-",
        &format!("{base}/in"),
    ])
    .stdin(std::fs::File::open(&path).unwrap())
    .output()
    .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let seen = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(!seen.chunked, "{}", seen.head);
    let parts = seen.parts();
    assert_eq!(
        parts[0].headers,
        ["Content-Disposition: form-data; name=\"f\"; filename=\"-\""]
    );
    assert_eq!(parts[0].data, data);
}
