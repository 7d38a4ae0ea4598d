//! `cargo run -p chunkwire-compare --release -- [--quick]`
//!
//! Uploads the same file with chunkwire, reqwest, curl and a raw socket client, each a
//! separate process pinned to CPU 0, to one sink process pinned to CPU 1, in turn (A B A B),
//! and prints a Markdown table (median, min and max of each figure; ratios to reqwest and to
//! the raw limit) and writes an SVG chart. Every process's CPU time and peak RSS come from
//! its rusage (`wait4`), in microseconds and KiB. The same binary is also the reqwest
//! client, the raw client, the raw sink and the launcher that measures each client (see
//! `measure.rs`).

mod clients;
mod measure;
mod single;

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const GIB: f64 = (1u64 << 30) as f64;
const MIB: u64 = 1 << 20;
/// The raw client's default write size, chunkwire's default chunk size.
const RAW_WRITE: usize = 48 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("launch") => measure::launch(&args[1..]),
        Some("reqwest-client") => clients::reqwest_client(&args[1..]),
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

// ---------------------------------------------------------------------------------------
// The comparison.

struct Options {
    sizes_mib: Vec<u64>,
    runs: usize,
    chart: PathBuf,
    sweep: bool,
    work: PathBuf,
    chunkwire: PathBuf,
    pin: bool,
    curl: bool,
}

/// The options every mode shares; the chunkwire binary must exist.
fn options(args: &[String]) -> Result<Options> {
    let quick = args.iter().any(|a| a == "--quick");
    let flag = |name: &str| args.iter().any(|a| a == name);
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
    let options = Options {
        sizes_mib: match value(args, "--sizes-mib") {
            Some(list) => list
                .split(',')
                .map(str::parse)
                .collect::<std::result::Result<_, _>>()?,
            None if quick => vec![4],
            None => vec![64, 2048],
        },
        runs: parsed(args, "--runs", if quick { 1 } else { 5 })?,
        chart: PathBuf::from(value(args, "--chart").unwrap_or("target/compare.svg")),
        sweep: !flag("--no-sweep"),
        work: PathBuf::from(value(args, "--work-dir").unwrap_or("target/compare-work")),
        chunkwire,
        pin: measure::can_pin(),
        curl: command_exists("curl"),
    };
    std::fs::create_dir_all(&options.work)?;
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
    let _ = writeln!(report, "{} run(s) each, in turn.\n", options.runs);
    single::run(&options, &mut report)?;
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

fn median(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    let median = if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    };
    (median, values[0], values[values.len() - 1])
}
