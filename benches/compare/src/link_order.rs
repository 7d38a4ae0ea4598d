//! `chunkwire-compare link-order`: writes `src/cli/link-order.txt`, the functions an
//! upload runs, so that the linker places them side by side in the `chunkwire` binary
//! (see `build.rs`).
//!
//! Why: a program's code is resident a page at a time, and the kernel maps up to 64 KiB
//! around each page an instruction is fetched from (fault-around). Left where the linker
//! puts them, the few hundred functions an upload runs are spread over most of a 4 MiB
//! text section, and about 1 MiB of code ends up resident; packed together they fit in a
//! few pages. The list comes from running the release binary under callgrind (which names
//! every function that executed, by its linker symbol) for the uploads the benchmark
//! measures: chunked, Content-Length and standard input over plain TCP, chunked over TLS,
//! then with a progress meter, checksums and a trace. A stale list costs only memory: the
//! linker ignores names it does not find.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Kind, Options, Result, SinkProcess, command_exists, make_file};

/// Where the list goes, beside the CLI's sources.
fn list_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../src/cli/link-order.txt")
}

pub fn generate(options: &Options) -> Result<()> {
    if !command_exists("valgrind") {
        return Err(
            "valgrind is needed to see which functions run: apt-get install valgrind".into(),
        );
    }
    let binary = options.chunkwire.canonicalize()?;
    let file = options.work.join("link-order-upload.bin");
    // A few dozen chunks: enough for every steady-state path to run many times.
    make_file(&file, 2 << 20)?;
    let file = file.display().to_string();
    let plain = SinkProcess::start(options, Kind::Http, false)?;
    let tls = SinkProcess::start(options, Kind::Http, true)?;
    let plain_url = format!(
        "http://{}/order",
        plain.addr.replace("127.0.0.1", "localhost")
    );
    let tls_url = format!(
        "https://{}/order",
        tls.addr.replace("127.0.0.1", "localhost")
    );
    let ca = tls.ca.display().to_string();
    // The default uploads first, so that their functions come first and lie together;
    // then the features a user turns on.
    let runs: [(&str, Vec<&str>, bool); 8] = [
        ("chunked", vec![plain_url.as_str(), file.as_str()], false),
        (
            "content-length",
            vec!["--content-length", plain_url.as_str(), file.as_str()],
            false,
        ),
        ("standard input", vec![plain_url.as_str(), "-"], true),
        (
            "TLS",
            vec!["--cacert", ca.as_str(), tls_url.as_str(), file.as_str()],
            false,
        ),
        (
            "progress meter",
            vec!["-#", plain_url.as_str(), file.as_str()],
            false,
        ),
        (
            "crc32c checksum",
            vec!["--checksum", "crc32c", plain_url.as_str(), file.as_str()],
            false,
        ),
        (
            "sha256 checksum",
            vec!["--checksum", "sha256", plain_url.as_str(), file.as_str()],
            false,
        ),
        (
            "trace",
            vec![
                "--trace-ascii",
                "/dev/null",
                plain_url.as_str(),
                file.as_str(),
            ],
            false,
        ),
    ];
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    for (name, args, from_stdin) in runs {
        let profile = options.work.join("link-order.callgrind");
        let stdin = if from_stdin {
            Stdio::from(std::fs::File::open(&file)?)
        } else {
            Stdio::null()
        };
        let output = Command::new("valgrind")
            .args([
                "--tool=callgrind",
                "--demangle=no",
                "--compress-strings=no",
                &format!("--callgrind-out-file={}", profile.display()),
            ])
            .arg(&binary)
            .args(["upload", "-f", "-o", "/dev/null"])
            .args(&args)
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?;
        if !output.status.success() {
            return Err(format!(
                "the {name} upload under valgrind failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )
            .into());
        }
        let before = order.len();
        for function in functions_in(&std::fs::read_to_string(&profile)?, &binary) {
            if seen.insert(function.clone()) {
                order.push(function);
            }
        }
        eprintln!(
            "{name}: {} functions, {} new",
            seen.len(),
            order.len() - before
        );
    }
    let mut text = order.join("\n");
    text.push('\n');
    std::fs::write(list_path(), text)?;
    eprintln!(
        "{} functions written to {}; rebuild with `cargo build --release`",
        order.len(),
        list_path().display()
    );
    Ok(())
}

/// How many of the listed functions the binary has, of how many: the list names symbols of
/// one toolchain and lock file, and the layout helps only as far as they still match.
pub fn coverage(binary: &Path) -> Result<(usize, usize)> {
    let list = std::fs::read_to_string(list_path())?;
    let image = std::fs::read(binary)?;
    // Symbol names sit in the string table, each ended by a NUL.
    let names: HashSet<&[u8]> = image.split(|&b| b == 0).collect();
    let listed: Vec<&str> = list.lines().filter(|l| !l.is_empty()).collect();
    let found = listed
        .iter()
        .filter(|name| names.contains(name.as_bytes()))
        .count();
    Ok((found, listed.len()))
}

/// The symbols of the functions in `binary` that ran, in the order callgrind lists them.
fn functions_in(profile: &str, binary: &Path) -> Vec<String> {
    let mut in_binary = false;
    let mut functions = Vec::new();
    for line in profile.lines() {
        if let Some(object) = line.strip_prefix("ob=") {
            // With uncompressed strings, `ob=` is the object's path (after an optional id).
            let path = object.rsplit_once(") ").map_or(object, |(_, path)| path);
            in_binary = Path::new(path.trim()) == binary;
        } else if let Some(function) = line.strip_prefix("fn=") {
            let function = function
                .rsplit_once(") ")
                .map_or(function, |(_, f)| f)
                .trim();
            // Code without a symbol shows as an address; there is nothing to order by.
            if in_binary && !function.starts_with("0x") {
                functions.push(function.to_owned());
            }
        }
    }
    functions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_are_taken_only_from_the_binary() {
        let profile = "\
ob=/lib/libc.so.6
fn=memcpy
ob=/t/chunkwire
fn=_ZN9chunkwire6driver4loop17h0123456789abcdefE
cfn=memcpy
calls=1 0
fn=0x0000000000012340
ob=(3) /t/chunkwire
fn=(7) _RNvCs1_3std4main
";
        assert_eq!(
            functions_in(profile, Path::new("/t/chunkwire")),
            [
                "_ZN9chunkwire6driver4loop17h0123456789abcdefE",
                "_RNvCs1_3std4main"
            ]
        );
    }
}
