//! `cargo run -p chunkwire-compare --release -- [--quick]`
//!
//! Uploads the same file with chunkwire, reqwest, curl and a raw socket client, each a
//! separate process pinned to CPU 0, to one sink process pinned to CPU 1, in turn (A B A B),
//! and prints a Markdown table (median, min and max of each figure; ratios to reqwest and to
//! the raw limit) and writes an SVG chart. The same binary is also the reqwest client, the
//! raw client and the raw sink, so every contender is a process measured whole by
//! `/usr/bin/time`.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const GIB: f64 = (1u64 << 30) as f64;
const MIB: u64 = 1 << 20;
/// The raw client's default write size, chunkwire's default chunk size.
const RAW_WRITE: usize = 48 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("reqwest-client") => reqwest_client(&args[1..]),
        Some("raw-client") => raw_client(&args[1..]),
        Some("raw-sink") => raw_sink(&args[1..]),
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
}

/// The options every mode shares; the chunkwire binary must exist.
fn options(args: &[String]) -> Result<Options> {
    let quick = args.iter().any(|a| a == "--quick");
    let target = std::env::current_exe()?
        .parent()
        .ok_or("no directory for the executable")?
        .to_path_buf();
    let options = Options {
        sizes_mib: match value(args, "--sizes-mib") {
            Some(list) => list
                .split(',')
                .map(str::parse)
                .collect::<std::result::Result<_, _>>()?,
            None if quick => vec![4],
            None => vec![64, 2048],
        },
        runs: value(args, "--runs")
            .map(str::parse)
            .transpose()?
            .unwrap_or(if quick { 1 } else { 5 }),
        chart: PathBuf::from(value(args, "--chart").unwrap_or("target/compare.svg")),
        sweep: !args.iter().any(|a| a == "--no-sweep"),
        work: PathBuf::from(value(args, "--work-dir").unwrap_or("target/compare-work")),
        chunkwire: value(args, "--chunkwire")
            .map(PathBuf::from)
            .unwrap_or_else(|| target.join("chunkwire")),
        pin: command_exists("taskset")
            && std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2,
    };
    if !options.chunkwire.exists() {
        return Err(format!(
            "{} not found: build it first with `cargo build --release` (or pass --chunkwire PATH)",
            options.chunkwire.display()
        )
        .into());
    }
    std::fs::create_dir_all(&options.work)?;
    Ok(options)
}

fn compare(args: &[String]) -> Result<()> {
    let options = options(args)?;
    if !command_exists("/usr/bin/time") {
        return Err(
            "GNU time (/usr/bin/time) is needed to measure each process: apt-get install time"
                .into(),
        );
    }
    let curl = command_exists("curl");
    if !curl {
        eprintln!("curl is not installed: its rows are left out");
    }

    let mut report = String::new();
    let _ = writeln!(
        report,
        "# chunkwire against reqwest, curl and a raw socket\n\n{} run(s) each, in turn; client on CPU 0, sink on CPU 1{}.\n",
        options.runs,
        if options.pin {
            ""
        } else {
            " (not pinned: taskset or a second core is missing)"
        }
    );
    let mut chart_rows = Vec::new();
    for &size in &options.sizes_mib {
        let file = options.work.join(format!("upload-{size}MiB.bin"));
        make_file(&file, size * MIB)?;
        let contenders = contenders(&options, &file, curl);
        let results = measure(&options, &contenders, size * MIB)?;
        table(&mut report, &format!("{size} MiB"), &results);
        if size == *options.sizes_mib.last().unwrap_or(&size) {
            chart_rows = results;
        }
    }
    if options.sweep {
        let size = *options.sizes_mib.first().unwrap_or(&64);
        let file = options.work.join(format!("upload-{size}MiB.bin"));
        let sweep: Vec<Contender> = ["16k", "32k", "48k", "64k", "128k", "256k", "1M"]
            .iter()
            .map(|chunk| Contender {
                name: format!("chunkwire --chunk-size {chunk}"),
                kind: Kind::Http,
                tls: false,
                command: chunkwire_command(&options, &file, false, &["--chunk-size", chunk]),
            })
            .collect();
        let results = measure(&options, &sweep, size * MIB)?;
        table(
            &mut report,
            &format!("chunk size sweep, plain TCP, {size} MiB"),
            &results,
        );
    }
    print!("{report}");
    if let Some(parent) = options.chart.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&options.chart, chart(&chart_rows))?;
    eprintln!("chart written to {}", options.chart.display());
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Speaks HTTP to the chunkwire sink.
    Http,
    /// Writes raw bytes to the raw sink.
    Raw,
}

struct Contender {
    name: String,
    kind: Kind,
    tls: bool,
    command: Vec<String>,
}

/// `{URL}`, `{ADDR}` and `{CA}` in a command are replaced by the sink's, run by run.
fn chunkwire_command(options: &Options, file: &Path, tls: bool, extra: &[&str]) -> Vec<String> {
    let mut command = vec![
        options.chunkwire.display().to_string(),
        "upload".into(),
        "-o".into(),
        "/dev/null".into(),
        "-f".into(),
    ];
    if tls {
        command.extend(["--cacert".into(), "{CA}".into()]);
    }
    command.extend(extra.iter().map(|s| s.to_string()));
    command.push("{URL}".into());
    command.push(file.display().to_string());
    command
}

fn contenders(options: &Options, file: &Path, curl: bool) -> Vec<Contender> {
    let me = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let file_arg = file.display().to_string();
    let ca = "{CA}".to_string();
    let mut all = Vec::new();
    for tls in [false, true] {
        let suffix = if tls { " TLS" } else { "" };
        // The reference limit writes what chunkwire writes (48 KiB); the issue's 64 KiB is
        // shown too, since a 64 KiB write is just over loopback's segment size.
        for (write, label) in [("49152", ""), ("65536", ", 64 KiB writes")] {
            let mut c = vec![
                me.clone(),
                "raw-client".into(),
                "{ADDR}".into(),
                file_arg.clone(),
                "--write".into(),
                write.into(),
            ];
            if tls {
                c.extend(["--cacert".into(), ca.clone()]);
            }
            all.push(Contender {
                name: format!("raw socket{suffix}{label}"),
                kind: Kind::Raw,
                tls,
                command: c,
            });
        }
        all.push(Contender {
            name: format!("chunkwire chunked{suffix}"),
            kind: Kind::Http,
            tls,
            command: chunkwire_command(options, file, tls, &[]),
        });
        if !tls {
            // Features on, each in turn; the row above is all of them off.
            let features: [(&str, &[&str]); 4] = [
                ("--trace-ascii /dev/null", &["--trace-ascii", "/dev/null"]),
                ("-# (progress meter)", &["-#"]),
                ("--checksum crc32c", &["--checksum", "crc32c"]),
                ("--checksum sha256", &["--checksum", "sha256"]),
            ];
            for (name, extra) in features {
                all.push(Contender {
                    name: format!("chunkwire chunked, {name}"),
                    kind: Kind::Http,
                    tls,
                    command: chunkwire_command(options, file, tls, extra),
                });
            }
        }
        all.push(Contender {
            name: format!("chunkwire Content-Length{suffix}"),
            kind: Kind::Http,
            tls,
            command: chunkwire_command(options, file, tls, &["--content-length"]),
        });
        for (mode, label) in [
            ("--chunked", "chunked"),
            ("--content-length", "Content-Length"),
        ] {
            let mut c = vec![
                me.clone(),
                "reqwest-client".into(),
                "{URL}".into(),
                file_arg.clone(),
                mode.into(),
            ];
            if tls {
                c.extend(["--cacert".into(), ca.clone()]);
            }
            all.push(Contender {
                name: format!("reqwest {label}{suffix}"),
                kind: Kind::Http,
                tls,
                command: c,
            });
        }
        if curl {
            for (chunked, label) in [(true, "chunked"), (false, "Content-Length")] {
                let mut c: Vec<String> = ["curl", "-sS", "-f", "-o", "/dev/null", "-T"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                c.push(file_arg.clone());
                if chunked {
                    c.extend(["-H".into(), "Transfer-Encoding: chunked".into()]);
                }
                if tls {
                    c.extend(["--cacert".into(), ca.clone()]);
                }
                c.push("{URL}".into());
                all.push(Contender {
                    name: format!("curl {label}{suffix}"),
                    kind: Kind::Http,
                    tls,
                    command: c,
                });
            }
        }
    }
    all
}

/// One measured run.
#[derive(Clone, Copy)]
struct Sample {
    seconds: f64,
    cpu_seconds: f64,
    peak_rss_kib: u64,
    sink_cpu_seconds: f64,
}

struct Measured {
    name: String,
    tls: bool,
    bytes: u64,
    samples: Vec<Sample>,
}

/// A sink process, pinned to CPU 1, and how to reach it.
struct SinkProcess {
    child: Child,
    addr: String,
    /// The CA certificate the sink wrote, for TLS clients to trust.
    ca: PathBuf,
}

impl SinkProcess {
    fn start(options: &Options, kind: Kind, tls: bool) -> Result<SinkProcess> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = format!("127.0.0.1:{port}");
        let ca = options.work.join(format!("sink-ca-{port}.pem"));
        let mut command = Vec::new();
        if options.pin {
            command.extend(["taskset".to_string(), "-c".into(), "1".into()]);
        }
        match kind {
            Kind::Http => {
                command.extend([
                    options.chunkwire.display().to_string(),
                    "sink".into(),
                    "--listen".into(),
                    addr.clone(),
                ]);
                if tls {
                    command.extend(["--tls".into(), "--ca-out".into(), ca.display().to_string()]);
                }
            }
            Kind::Raw => {
                command.extend([
                    std::env::current_exe()?.display().to_string(),
                    "raw-sink".into(),
                    addr.clone(),
                ]);
                if tls {
                    command.extend(["--tls".into(), "--ca-out".into(), ca.display().to_string()]);
                }
            }
        }
        let _ = std::fs::remove_file(&ca);
        let child = Command::new(&command[0])
            .args(&command[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&addr).is_err() || (tls && !ca.exists()) {
            if Instant::now() > deadline {
                return Err(format!("the sink did not start: {command:?}").into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(SinkProcess { child, addr, ca })
    }

    /// User + system CPU seconds the sink has used so far, from /proc.
    fn cpu_seconds(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())) else {
            return 0.0;
        };
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
        // After the command name: state is field 3, utime 14, stime 15 (1-based).
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
            .sum();
        ticks / 100.0
    }
}

impl Drop for SinkProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_once(options: &Options, contender: &Contender, sink: &SinkProcess) -> Result<Sample> {
    let scheme = if contender.tls { "https" } else { "http" };
    let host = sink.addr.replace("127.0.0.1", "localhost");
    let url = format!("{scheme}://{host}/bench");
    let stats = options.work.join("time.txt");
    let mut command: Vec<String> = Vec::new();
    if options.pin {
        command.extend(["taskset".into(), "-c".into(), "0".into()]);
    }
    command.extend([
        "/usr/bin/time".into(),
        "-f".into(),
        "%e %U %S %M".into(),
        "-o".into(),
        stats.display().to_string(),
    ]);
    let ca = sink.ca.display().to_string();
    command.extend(contender.command.iter().map(|a| {
        a.replace("{URL}", &url)
            .replace("{ADDR}", &sink.addr)
            .replace("{CA}", &ca)
    }));
    let sink_before = sink.cpu_seconds();
    // Wall time from here: /usr/bin/time only has 10 ms resolution.
    let started = Instant::now();
    let output = Command::new(&command[0])
        .args(&command[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    let seconds = started.elapsed().as_secs_f64();
    let sink_after = sink.cpu_seconds();
    if !output.status.success() {
        return Err(format!(
            "{} failed: {}",
            contender.name,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let text = std::fs::read_to_string(&stats)?;
    let numbers: Vec<f64> = text
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()?;
    let [_, user, system, rss] = numbers[..] else {
        return Err(format!("unexpected /usr/bin/time output {text:?}").into());
    };
    Ok(Sample {
        seconds,
        cpu_seconds: user + system,
        peak_rss_kib: rss as u64,
        sink_cpu_seconds: sink_after - sink_before,
    })
}

fn measure(options: &Options, contenders: &[Contender], bytes: u64) -> Result<Vec<Measured>> {
    let mut results: Vec<Measured> = contenders
        .iter()
        .map(|c| Measured {
            name: c.name.clone(),
            tls: c.tls,
            bytes,
            samples: Vec::new(),
        })
        .collect();
    // One sink per (kind, TLS), kept for all runs: its CA file stays valid.
    let mut sinks: Vec<((Kind, bool), SinkProcess)> = Vec::new();
    for run in 0..options.runs {
        for (contender, result) in contenders.iter().zip(results.iter_mut()) {
            let key = (contender.kind, contender.tls);
            if !sinks.iter().any(|(k, _)| *k == key) {
                sinks.push((
                    key,
                    SinkProcess::start(options, contender.kind, contender.tls)?,
                ));
            }
            let sink = &sinks
                .iter()
                .find(|(k, _)| *k == key)
                .expect("started above")
                .1;
            let sample = run_once(options, contender, sink)?;
            eprintln!(
                "run {}/{}: {:<44} {:>6.2} GiB/s {:>6.2} CPU s/GiB {:>6.1} MiB",
                run + 1,
                options.runs,
                contender.name,
                bytes as f64 / GIB / sample.seconds.max(1e-9),
                sample.cpu_seconds / (bytes as f64 / GIB),
                sample.peak_rss_kib as f64 / 1024.0
            );
            result.samples.push(sample);
        }
    }
    Ok(results)
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

struct Summary {
    gib_per_s: (f64, f64, f64),
    cpu_per_gib: (f64, f64, f64),
    rss_mib: (f64, f64, f64),
    sink_cpu_share: f64,
}

fn summarise(m: &Measured) -> Summary {
    let gib = m.bytes as f64 / GIB;
    let throughput = m
        .samples
        .iter()
        .map(|s| gib / s.seconds.max(1e-9))
        .collect();
    let cpu = m.samples.iter().map(|s| s.cpu_seconds / gib).collect();
    let rss = m
        .samples
        .iter()
        .map(|s| s.peak_rss_kib as f64 / 1024.0)
        .collect();
    let sink_share = m
        .samples
        .iter()
        .map(|s| s.sink_cpu_seconds / s.seconds.max(1e-9))
        .collect();
    Summary {
        gib_per_s: median(throughput),
        cpu_per_gib: median(cpu),
        rss_mib: median(rss),
        sink_cpu_share: median(sink_share).0,
    }
}

fn table(report: &mut String, title: &str, results: &[Measured]) {
    let summaries: Vec<Summary> = results.iter().map(summarise).collect();
    let reference = |name: &str, tls: bool| {
        results
            .iter()
            .zip(&summaries)
            .find(|(m, _)| m.name.starts_with(name) && m.tls == tls && !m.name.contains("64 KiB"))
            .map(|(_, s)| s.gib_per_s.0)
    };
    let _ = writeln!(report, "## {title}\n");
    let _ = writeln!(
        report,
        "| contender | GiB/s median (min–max) | CPU s/GiB median (min–max) | peak RSS MiB | × reqwest chunked | × raw | sink CPU |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|---|---|");
    for (m, s) in results.iter().zip(&summaries) {
        let ratio = |base: Option<f64>| {
            base.map_or("–".to_owned(), |b| format!("{:.2}", s.gib_per_s.0 / b))
        };
        let sink_note = if s.sink_cpu_share > 0.9 {
            " (sink busy: measures the sink)"
        } else {
            ""
        };
        let _ = writeln!(
            report,
            "| {} | {:.2} ({:.2}–{:.2}) | {:.2} ({:.2}–{:.2}) | {:.1} ({:.1}–{:.1}) | {} | {} | {:.0}%{} |",
            m.name,
            s.gib_per_s.0,
            s.gib_per_s.1,
            s.gib_per_s.2,
            s.cpu_per_gib.0,
            s.cpu_per_gib.1,
            s.cpu_per_gib.2,
            s.rss_mib.0,
            s.rss_mib.1,
            s.rss_mib.2,
            ratio(reference("reqwest chunked", m.tls)),
            ratio(reference("raw socket", m.tls)),
            s.sink_cpu_share * 100.0,
            sink_note
        );
    }
    report.push('\n');
}

/// Two bar charts side by side: throughput and CPU per GiB, by contender.
fn chart(results: &[Measured]) -> String {
    let summaries: Vec<(String, Summary)> = results
        .iter()
        .map(|m| (m.name.clone(), summarise(m)))
        .collect();
    let row = 22.0;
    let label_width = 330.0;
    let bar_width = 260.0;
    let height = 60.0 + row * summaries.len() as f64;
    let max_speed = summaries
        .iter()
        .map(|(_, s)| s.gib_per_s.0)
        .fold(0.01, f64::max);
    let max_cpu = summaries
        .iter()
        .map(|(_, s)| s.cpu_per_gib.0)
        .fold(0.01, f64::max);
    let mut svg = String::new();
    let width = label_width + 2.0 * (bar_width + 90.0);
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{label_width}" y="20" font-weight="bold">throughput, GiB/s (longer is better)</text>"#
    );
    let cpu_x = label_width + bar_width + 90.0;
    let _ = writeln!(
        svg,
        r#"<text x="{cpu_x}" y="20" font-weight="bold">CPU seconds per GiB (shorter is better)</text>"#
    );
    for (i, (name, s)) in summaries.iter().enumerate() {
        let y = 40.0 + row * i as f64;
        let color = if name.starts_with("chunkwire") {
            "#2b8a3e"
        } else if name.starts_with("raw") {
            "#868e96"
        } else {
            "#1c7ed6"
        };
        let speed = bar_width * s.gib_per_s.0 / max_speed;
        let cpu = bar_width * s.cpu_per_gib.0 / max_cpu;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            label_width - 8.0,
            y + 13.0,
            name
        );
        let _ = writeln!(
            svg,
            r#"<rect x="{label_width}" y="{y}" width="{speed:.1}" height="16" fill="{color}"/>"#
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}">{:.2}</text>"#,
            label_width + speed + 4.0,
            y + 13.0,
            s.gib_per_s.0
        );
        let _ = writeln!(
            svg,
            r#"<rect x="{cpu_x}" y="{y}" width="{cpu:.1}" height="16" fill="{color}"/>"#
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}">{:.2}</text>"#,
            cpu_x + cpu + 4.0,
            y + 13.0,
            s.cpu_per_gib.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

// ---------------------------------------------------------------------------------------
// The contenders that live in this binary.

fn client_tls(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca)?;
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The limit: the file through one buffer into a socket, no HTTP, plain or rustls.
fn raw_client(args: &[String]) -> Result<()> {
    let [addr, file, ..] = args else {
        return Err("usage: raw-client ADDR FILE [--cacert CA]".into());
    };
    let mut source = std::fs::File::open(file)?;
    let write_size = value(args, "--write")
        .map(str::parse)
        .transpose()?
        .unwrap_or(RAW_WRITE);
    let mut buf = vec![0u8; write_size];
    let tcp = TcpStream::connect(addr)?;
    // The same socket option chunkwire sets: without it, Nagle holds back the tail of each
    // write that does not fill a segment, and the limit measures that instead.
    tcp.set_nodelay(true)?;
    let mut sent = 0u64;
    match value(args, "--cacert") {
        None => {
            let mut tcp = tcp;
            loop {
                let n = source.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                tcp.write_all(&buf[..n])?;
                sent += n as u64;
            }
            tcp.shutdown(std::net::Shutdown::Write)?;
            let mut ack = [0u8; 8];
            tcp.read_exact(&mut ack)?;
            check_ack(ack, sent)
        }
        Some(ca) => {
            let name = rustls::pki_types::ServerName::try_from("localhost")?;
            let conn = rustls::ClientConnection::new(client_tls(Path::new(ca))?, name)?;
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            loop {
                let n = source.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                tls.write_all(&buf[..n])?;
                sent += n as u64;
            }
            tls.conn.send_close_notify();
            tls.flush()?;
            let mut ack = [0u8; 8];
            tls.read_exact(&mut ack)?;
            check_ack(ack, sent)
        }
    }
}

fn check_ack(ack: [u8; 8], sent: u64) -> Result<()> {
    let got = u64::from_le_bytes(ack);
    if got != sent {
        return Err(format!("the raw sink got {got} of {sent} bytes").into());
    }
    Ok(())
}

/// Counts what raw clients send and answers with the count (8 bytes) at their end.
fn raw_sink(args: &[String]) -> Result<()> {
    let addr = args
        .first()
        .ok_or("usage: raw-sink ADDR [--tls --ca-out FILE]")?;
    let listener = TcpListener::bind(addr)?;
    let tls = if args.iter().any(|a| a == "--tls") {
        let identity = chunkwire::ServerTls::self_signed()?;
        let ca_out = value(args, "--ca-out").ok_or("--tls needs --ca-out")?;
        std::fs::write(ca_out, identity.ca_pem())?;
        Some(identity)
    } else {
        None
    };
    for stream in listener.incoming() {
        let stream = stream?;
        let tls = tls.clone();
        std::thread::spawn(move || -> io::Result<()> {
            let mut buf = vec![0u8; 256 * 1024];
            match tls {
                None => {
                    let mut stream = stream;
                    let count = drain(&mut stream, &mut buf)?;
                    stream.write_all(&count.to_le_bytes())
                }
                Some(tls) => {
                    let mut stream = tls.accept(stream)?;
                    let count = drain(&mut stream, &mut buf)?;
                    stream.write_all(&count.to_le_bytes())?;
                    stream.close();
                    Ok(())
                }
            }
        });
    }
    Ok(())
}

fn drain(stream: &mut impl Read, buf: &mut [u8]) -> io::Result<u64> {
    let mut count = 0u64;
    loop {
        match stream.read(buf) {
            Ok(0) => return Ok(count),
            Ok(n) => count += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// reqwest streaming the file: `Body::wrap_stream` over a 64 KiB `ReaderStream`, chunked or
/// with Content-Length.
fn reqwest_client(args: &[String]) -> Result<()> {
    let [url, file, mode, ..] = args else {
        return Err(
            "usage: reqwest-client URL FILE --chunked|--content-length [--cacert CA]".into(),
        );
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = value(args, "--cacert") {
            let pem = std::fs::read(ca)?;
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        let client = builder.build()?;
        let source = tokio::fs::File::open(file).await?;
        let len = source.metadata().await?.len();
        let stream = tokio_util::io::ReaderStream::with_capacity(source, 64 * 1024);
        let mut request = client
            .put(url.as_str())
            .body(reqwest::Body::wrap_stream(stream));
        if mode == "--content-length" {
            request = request.header(reqwest::header::CONTENT_LENGTH, len);
        }
        let response = request.send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            return Err(format!("status {status}: {}", String::from_utf8_lossy(&body)).into());
        }
        Ok(())
    })
}
