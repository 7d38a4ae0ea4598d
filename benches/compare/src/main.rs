//! `cargo run -p chunkwire-compare --release -- [--quick] [--single] [--concurrent] [--small-uploads]`
//!
//! Uploads files with chunkwire, reqwest, curl and a raw socket client, each a separate
//! process pinned to CPU 0, to a sink process pinned to CPU 1, in turn (A B A B), and
//! prints Markdown tables and writes an SVG chart. Three parts, all of them unless some are
//! named:
//!
//! - `--single`: one upload of one file (64 MiB and 2 GiB), plain and TLS, and a sweep of
//!   chunkwire's chunk size; the chart.
//! - `--concurrent`: N uploads at once on one thread (N = 1, 10, 100, 1,000) of 1 MiB and of
//!   64 MiB each, plain and TLS.
//! - `--small-uploads`: 10,000 uploads of 1 KiB over one kept connection and over 10.
//! - `--form`: a form of a 1 GiB file part and two text fields, by chunkwire `-F`, requests
//!   (`files=` and requests-toolbelt's `MultipartEncoder`), curl `-F` and reqwest's
//!   multipart, against chunkwire's plain upload of the same file.
//!
//! Then the targets of the concurrent and small-upload parts, each met or not and by how
//! much. Every process's CPU time and peak RSS come from its rusage (`wait4`), in
//! microseconds and KiB. The same binary is also the reqwest clients, the raw client, the
//! raw sink and the launcher that measures each client (see `measure.rs`).

mod clients;
mod concurrent;
mod form;
mod measure;
mod single;
mod small;
mod targets;

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const GIB: f64 = (1u64 << 30) as f64;
const MIB: u64 = 1 << 20;
/// The raw client's default write size, chunkwire's default chunk size.
const RAW_WRITE: usize = 48 * 1024;

fn main() {
    measure::raise_open_files();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("launch") => measure::launch(&args[1..]),
        Some("reqwest-client") => clients::reqwest_client(&args[1..]),
        Some("reqwest-many") => clients::reqwest_many(&args[1..]),
        Some("reqwest-form") => clients::reqwest_form(&args[1..]),
        Some("raw-client") => clients::raw_client(&args[1..]),
        Some("raw-sink") => clients::raw_sink(&args[1..]),
        _ => compare(&args),
    };
    if let Err(e) = result {
        eprintln!("chunkwire-compare: {e}");
        std::process::exit(1);
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// `--flag VALUE` parsed, or `default`.
fn parsed<T: std::str::FromStr>(args: &[String], flag: &str, default: T) -> Result<T>
where
    T::Err: std::error::Error + 'static,
{
    Ok(value(args, flag)
        .map(str::parse)
        .transpose()?
        .unwrap_or(default))
}

/// `--flag 1,10,100` parsed, or `default`.
fn list<T: std::str::FromStr>(args: &[String], flag: &str, default: Vec<T>) -> Result<Vec<T>>
where
    T::Err: std::error::Error + 'static,
{
    match value(args, flag) {
        Some(list) => Ok(list
            .split(',')
            .map(|item| item.trim().replace('_', "").parse())
            .collect::<std::result::Result<_, _>>()?),
        None => Ok(default),
    }
}

// ---------------------------------------------------------------------------------------
// The comparison.

/// What the chunkwire binary under test can do, from its `--help` texts.
struct Features {
    /// `upload -Z/--parallel` and `--parallel-max`.
    parallel: bool,
    /// `upload --chunk-size`.
    chunk_size: bool,
    /// `sink --max-connections`.
    sink_max_connections: bool,
    /// `upload -F/--form`.
    form: bool,
}

struct Options {
    single: bool,
    concurrent: bool,
    small: bool,
    form: bool,
    form_size_mib: u64,
    form_runs: usize,
    sizes_mib: Vec<u64>,
    runs: usize,
    chart: PathBuf,
    sweep: bool,
    concurrency: Vec<usize>,
    concurrent_sizes_mib: Vec<u64>,
    concurrent_runs: usize,
    big_tls: bool,
    small_count: usize,
    small_runs: usize,
    work: PathBuf,
    chunkwire: PathBuf,
    pin: bool,
    curl: bool,
    features: Features,
}

/// The options every mode shares; the chunkwire binary must exist.
fn options(args: &[String]) -> Result<Options> {
    let quick = args.iter().any(|a| a == "--quick");
    let flag = |name: &str| args.iter().any(|a| a == name);
    let all =
        !flag("--single") && !flag("--concurrent") && !flag("--small-uploads") && !flag("--form");
    let target = std::env::current_exe()?
        .parent()
        .ok_or("no directory for the executable")?
        .to_path_buf();
    let chunkwire = value(args, "--chunkwire")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("chunkwire"));
    if !chunkwire.exists() {
        return Err(format!(
            "{} not found: build it first with `cargo build --release` (or pass --chunkwire PATH)",
            chunkwire.display()
        )
        .into());
    }
    let help = |command: &str| {
        Command::new(&chunkwire)
            .args([command, "--help"])
            .stdin(Stdio::null())
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr)
            })
            .unwrap_or_default()
    };
    let (upload_help, sink_help) = (help("upload"), help("sink"));
    let features = Features {
        parallel: upload_help.contains("--parallel-max") && upload_help.contains("--parallel"),
        chunk_size: upload_help.contains("--chunk-size"),
        sink_max_connections: sink_help.contains("--max-connections"),
        form: upload_help.contains("--form"),
    };
    let options = Options {
        single: all || flag("--single"),
        concurrent: all || flag("--concurrent"),
        small: all || flag("--small-uploads"),
        form: all || flag("--form"),
        form_size_mib: parsed(args, "--form-size-mib", if quick { 4 } else { 1024 })?,
        form_runs: parsed(args, "--form-runs", if quick { 1 } else { 3 })?,
        sizes_mib: list(
            args,
            "--sizes-mib",
            if quick { vec![4] } else { vec![64, 2048] },
        )?,
        runs: parsed(args, "--runs", if quick { 1 } else { 5 })?,
        chart: PathBuf::from(value(args, "--chart").unwrap_or("target/compare.svg")),
        sweep: !flag("--no-sweep"),
        concurrency: list(
            args,
            "--concurrency",
            if quick {
                vec![1, 10]
            } else {
                vec![1, 10, 100, 1000]
            },
        )?,
        concurrent_sizes_mib: list(
            args,
            "--concurrent-sizes-mib",
            if quick { vec![1] } else { vec![1, 64] },
        )?,
        concurrent_runs: parsed(args, "--concurrent-runs", if quick { 1 } else { 3 })?,
        big_tls: flag("--big-tls"),
        small_count: parsed(args, "--small-count", if quick { 1000 } else { 10_000 })?,
        small_runs: parsed(args, "--small-runs", if quick { 1 } else { 3 })?,
        work: PathBuf::from(value(args, "--work-dir").unwrap_or("target/compare-work")),
        chunkwire,
        pin: measure::can_pin(),
        curl: command_exists("curl"),
        features,
    };
    std::fs::create_dir_all(&options.work)?;
    // Absolute: clients run in directories of their own, with paths into this one.
    let options = Options {
        work: std::fs::canonicalize(&options.work)?,
        ..options
    };
    Ok(options)
}

fn compare(args: &[String]) -> Result<()> {
    let options = options(args)?;
    if !options.curl {
        eprintln!("curl is not installed: its rows are left out");
    }
    let mut report = String::new();
    let _ = writeln!(
        report,
        "# chunkwire against reqwest, curl and a raw socket\n\nClient on CPU 0, sink on CPU 1{}; CPU time and peak RSS of each process from its rusage.\n",
        if options.pin {
            ""
        } else {
            " (not pinned: this process may not run on both CPU 0 and CPU 1)"
        }
    );
    if options.single {
        let _ = writeln!(report, "{} run(s) each, in turn.\n", options.runs);
        single::run(&options, &mut report)?;
    }
    let concurrent = if options.concurrent {
        concurrent::run(&options, &mut report)?
    } else {
        Vec::new()
    };
    let small = if options.small {
        small::run(&options, &mut report)?
    } else {
        Vec::new()
    };
    if options.concurrent || options.small {
        targets::report(&options, &concurrent, &small, &mut report);
    }
    if options.form {
        form::run(&options, &mut report)?;
    }
    print!("{report}");
    io::stdout().flush()?;
    Ok(())
}

fn command_exists(name: &str) -> bool {
    if name.contains('/') {
        return Path::new(name).exists();
    }
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A file of pseudo-random bytes (incompressible, different everywhere), made once.
fn make_file(path: &Path, len: u64) -> Result<()> {
    if path.metadata().is_ok_and(|m| m.len() == len) {
        return Ok(());
    }
    let mut out = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
        }
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(())
}

/// A directory of `count` hard links to `source`, named `{prefix}00001` and on, so the same
/// file can be uploaded `count` times to distinct URL paths (a URL ending in `/` gets each
/// file's name appended). Made once; the names, in order.
fn links(dir: &Path, source: &Path, prefix: &str, count: usize) -> Result<Vec<String>> {
    let width = count.to_string().len().max(4);
    let names: Vec<String> = (1..=count)
        .map(|i| format!("{prefix}{i:0width$}"))
        .collect();
    let complete = std::fs::read_dir(dir).is_ok_and(|d| d.count() == count)
        && names.iter().all(|n| dir.join(n).exists());
    if !complete {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        for name in &names {
            let link = dir.join(name);
            if std::fs::hard_link(source, &link).is_err() {
                std::os::unix::fs::symlink(std::fs::canonicalize(source)?, &link)?;
            }
        }
    }
    Ok(names)
}

fn median(mut values: Vec<f64>) -> (f64, f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    let median = if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    };
    (median, values[0], values[values.len() - 1])
}
