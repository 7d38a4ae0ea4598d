//! The concurrent part: N uploads at once from one client process on one thread, of the
//! same file to N distinct URL paths, to one sink.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::measure::{Kind, Usage, open_files_limit, run_client, with_sink};
use crate::{GIB, MIB, Options, Result, links, make_file, median};

/// curl's most transfers at once (`--parallel-max`, curl 7.x and 8.x up to 8.15): above it
/// curl runs 300 at a time.
const CURL_PARALLEL_MAX: usize = 300;
/// Without `sink --max-connections`, the sink serves 256 at once and answers 503 past that.
const SINK_DEFAULT_CAP: usize = 200;
/// A row that moves this many bytes a run or more is run once, whatever `--concurrent-runs`.
const ONE_RUN_BYTES: u64 = 4 << 30;
/// TLS rows moving more than this a run (N = 1,000 of 64 MiB) are left out unless
/// `--big-tls`: the sink decrypts about 0.5 GiB/s here, two minutes a contender.
const BIG_TLS_BYTES: u64 = 16 << 30;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Client {
    /// `chunkwire upload -Z --parallel-max N`, with `--chunk-size` if given.
    Chunkwire(Option<&'static str>),
    /// `curl -Z --parallel-immediate --parallel-max N -K config`.
    Curl,
    /// This binary's `reqwest-many`, current-thread (false) or multi-thread (true) runtime.
    Reqwest { multi: bool },
}

impl Client {
    pub fn name(self) -> String {
        match self {
            Client::Chunkwire(None) => "chunkwire -Z".into(),
            Client::Chunkwire(Some(chunk)) => format!("chunkwire -Z --chunk-size {chunk}"),
            Client::Curl => "curl -Z".into(),
            Client::Reqwest { multi: false } => "reqwest current-thread".into(),
            Client::Reqwest { multi: true } => "reqwest multi-thread".into(),
        }
    }
}

#[derive(Clone, Copy)]
pub struct Sample {
    pub usage: Usage,
    pub sink_cpu_seconds: f64,
}

/// One row of a concurrent table: a contender at one N, one size, plain or TLS.
pub struct Row {
    pub client: Client,
    pub tls: bool,
    pub size_mib: u64,
    pub n: usize,
    /// Uploads the client runs at once: N, or curl's cap.
    pub at_once: usize,
    /// Why the row has no figures, if it has none.
    pub skipped: Option<String>,
    pub note: Option<String>,
    pub samples: Vec<Sample>,
}

/// The medians of a row that has figures.
pub struct Figures {
    pub gib_per_s: (f64, f64, f64),
    pub cpu_per_gib: (f64, f64, f64),
    pub rss_kib: f64,
    pub sink_cpu_per_gib: f64,
}

impl Row {
    pub fn bytes(&self) -> u64 {
        self.n as u64 * self.size_mib * MIB
    }

    pub fn figures(&self) -> Option<Figures> {
        if self.skipped.is_some() || self.samples.is_empty() {
            return None;
        }
        let gib = self.bytes() as f64 / GIB;
        let of = |f: &dyn Fn(&Sample) -> f64| median(self.samples.iter().map(f).collect());
        Some(Figures {
            gib_per_s: of(&|s| gib / s.usage.seconds.max(1e-9)),
            cpu_per_gib: of(&|s| s.usage.cpu_seconds / gib),
            rss_kib: of(&|s| s.usage.peak_rss_kib as f64).0,
            sink_cpu_per_gib: of(&|s| s.sink_cpu_seconds / gib).0,
        })
    }
}

/// The memory each upload past the first adds: (peak RSS at N − peak RSS at 1) / (uploads
/// at once − 1), in KiB, from the same contender's N = 1 row of the same run.
pub fn per_extra_upload_kib(rows: &[Row], row: &Row) -> Option<f64> {
    if row.at_once < 2 {
        return None;
    }
    let one = rows.iter().find(|r| {
        r.client == row.client && r.tls == row.tls && r.size_mib == row.size_mib && r.n == 1
    })?;
    let (at_n, at_one) = (row.figures()?.rss_kib, one.figures()?.rss_kib);
    Some((at_n - at_one) / (row.at_once - 1) as f64)
}

fn clients(options: &Options, tls: bool, size_mib: u64) -> Vec<Client> {
    let mut all = vec![Client::Chunkwire(None)];
    // The 16 KiB rows are for the memory target: plain TCP, the smallest size only.
    if !tls && Some(&size_mib) == options.concurrent_sizes_mib.iter().min() {
        all.push(Client::Chunkwire(Some("16k")));
    }
    if options.curl {
        all.push(Client::Curl);
    }
    all.extend([
        Client::Reqwest { multi: false },
        Client::Reqwest { multi: true },
    ]);
    all
}

/// Runs the concurrent part, appends its tables to `report`, and returns its rows.
pub fn run(options: &Options, report: &mut String) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let _ = writeln!(
        report,
        "## Concurrent uploads on one thread\n\nThe client and the sink each have one CPU. N uploads at once of the same file to N distinct URL paths, from one client process; a fresh sink for every run. {} run(s) each, in turn (a row moving {} GiB or more, once). \"at once\" is how many uploads the client runs together. \"per extra upload\" is (peak RSS at N − peak RSS at N = 1) / (at once − 1): what each upload past the first costs. reqwest reads its files synchronously on its runtime's threads (not through tokio's blocking pool); its multi-thread runtime starts one worker per CPU it may use, here {}.\n",
        options.concurrent_runs,
        ONE_RUN_BYTES >> 30,
        if options.pin {
            "one (the client is pinned to CPU 0)"
        } else {
            "one per core"
        }
    );
    for &size_mib in &options.concurrent_sizes_mib {
        let source = options.work.join(format!("upload-{size_mib}MiB.bin"));
        make_file(&source, size_mib * MIB)?;
        for tls in [false, true] {
            let first = rows.len();
            for &n in &options.concurrency {
                let dir = options.work.join(format!("links-{size_mib}MiB-{n}"));
                let names = links(&dir, &source, "u", n)?;
                let clients = clients(options, tls, size_mib);
                let mut group: Vec<Row> = clients
                    .iter()
                    .map(|&client| new_row(options, client, tls, size_mib, n))
                    .collect();
                let runs = if (n as u64 * size_mib * MIB) >= ONE_RUN_BYTES {
                    1
                } else {
                    options.concurrent_runs
                };
                let max_connections = options
                    .features
                    .sink_max_connections
                    .then_some(n + 16)
                    .filter(|_| n > SINK_DEFAULT_CAP);
                for run in 0..runs {
                    for row in group.iter_mut().filter(|r| r.skipped.is_none()) {
                        let name = format!(
                            "{}{} N={n} {size_mib} MiB",
                            row.client.name(),
                            if tls { " TLS" } else { "" }
                        );
                        let (usage, sink_cpu_seconds) =
                            with_sink(options, Kind::Http, tls, max_connections, |sink| {
                                let command = command(options, row, &dir, &names, sink)?;
                                run_client(options, &name, &command, Some(&dir))
                            })?;
                        let gib = (n as u64 * size_mib * MIB) as f64 / GIB;
                        eprintln!(
                            "run {}/{runs}: {name:<52} {:>6.2} GiB/s {:>6.2} CPU s/GiB {:>7.1} MiB",
                            run + 1,
                            gib / usage.seconds.max(1e-9),
                            usage.cpu_seconds / gib,
                            usage.peak_rss_kib as f64 / 1024.0
                        );
                        row.samples.push(Sample {
                            usage,
                            sink_cpu_seconds,
                        });
                    }
                }
                rows.extend(group);
            }
            let title = format!(
                "{size_mib} MiB each, {}",
                if tls { "TLS" } else { "plain TCP" }
            );
            table(report, &title, &rows, first);
        }
    }
    Ok(rows)
}

fn new_row(options: &Options, client: Client, tls: bool, size_mib: u64, n: usize) -> Row {
    let features = &options.features;
    let mut row = Row {
        client,
        tls,
        size_mib,
        n,
        at_once: n,
        skipped: None,
        note: None,
        samples: Vec::new(),
    };
    if let Client::Curl = client
        && n > CURL_PARALLEL_MAX
    {
        row.at_once = CURL_PARALLEL_MAX;
        row.note = Some(format!(
            "curl runs at most {CURL_PARALLEL_MAX} transfers at once"
        ));
    }
    if let Client::Chunkwire(chunk) = client {
        if !features.parallel {
            row.skipped = Some(
                "not available yet (`chunkwire upload --help` lists no -Z/--parallel-max)".into(),
            );
        } else if chunk.is_some() && !features.chunk_size {
            row.skipped =
                Some("not available (`chunkwire upload --help` lists no --chunk-size)".into());
        }
    }
    // The first reason found is the one shown.
    if row.skipped.is_none() && n > SINK_DEFAULT_CAP && !features.sink_max_connections {
        row.skipped = Some(
            "skipped: `chunkwire sink --help` lists no --max-connections, and the sink answers 503 past 256 connections"
                .into(),
        );
    }
    if row.skipped.is_none() && tls && row.bytes() > BIG_TLS_BYTES && !options.big_tls {
        row.skipped = Some(format!(
            "left out: {} GiB a run over TLS takes minutes (`--big-tls` runs it)",
            row.bytes() >> 30
        ));
    }
    let fds = open_files_limit();
    if row.skipped.is_none() && (2 * n as u64 + 64) > fds {
        row.skipped = Some(format!(
            "skipped: {n} uploads need about {} open files, the limit is {fds}",
            2 * n + 64
        ));
    }
    row
}

/// The client's command line for one run against `sink`; it runs in `dir`, where `names`
/// are N links to the source file.
fn command(
    options: &Options,
    row: &Row,
    dir: &Path,
    names: &[String],
    sink: &crate::measure::SinkProcess,
) -> Result<Vec<String>> {
    let scheme = if row.tls { "https" } else { "http" };
    let host = sink.addr.replace("127.0.0.1", "localhost");
    let base = format!("{scheme}://{host}/n{}/", row.n);
    let ca = sink.ca.display().to_string();
    let mut command: Vec<String> = Vec::new();
    match row.client {
        Client::Chunkwire(chunk) => {
            command.extend([
                options.chunkwire.display().to_string(),
                "upload".into(),
                "-Z".into(),
                "--parallel-max".into(),
                row.n.to_string(),
                "-s".into(),
                "-f".into(),
                "-o".into(),
                "/dev/null".into(),
            ]);
            if row.tls {
                command.extend(["--cacert".into(), ca]);
            }
            if let Some(chunk) = chunk {
                command.extend(["--chunk-size".into(), chunk.into()]);
            }
            command.push(base);
            command.extend(names.iter().cloned());
        }
        Client::Curl => {
            let config = curl_config(options, dir, &base, names)?;
            command.extend(
                [
                    "curl",
                    "-sS",
                    // -s alone leaves curl's parallel progress meter on (curl 7.88).
                    "--no-progress-meter",
                    "-f",
                    "-Z",
                    "--parallel-immediate",
                    "--parallel-max",
                ]
                .map(String::from),
            );
            command.push(row.at_once.to_string());
            if row.tls {
                command.extend(["--cacert".into(), ca]);
            }
            command.extend(["-K".into(), config.display().to_string()]);
        }
        Client::Reqwest { multi } => {
            command.extend([
                std::env::current_exe()?.display().to_string(),
                "reqwest-many".into(),
                base,
                ".".into(),
                "--concurrency".into(),
                row.n.to_string(),
                "--runtime".into(),
                if multi { "multi" } else { "current" }.into(),
            ]);
            if row.tls {
                command.extend(["--cacert".into(), ca]);
            }
        }
    }
    Ok(command)
}

/// A curl config file (`-K`) that uploads each of `names` (in `dir`) to `base` + its name,
/// the response to /dev/null. Written beside `dir`, not in it.
pub fn curl_config(options: &Options, dir: &Path, base: &str, names: &[String]) -> Result<PathBuf> {
    let mut text = String::with_capacity(names.len() * (base.len() + 64));
    for name in names {
        let _ = writeln!(
            text,
            "url = \"{base}{name}\"\nupload-file = \"{name}\"\noutput = \"/dev/null\""
        );
    }
    let file = options.work.join(format!(
        "curl-{}.config",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("files")
    ));
    std::fs::write(&file, text)?;
    Ok(file)
}

fn table(report: &mut String, title: &str, rows: &[Row], first: usize) {
    let _ = writeln!(report, "### {title}\n");
    let _ = writeln!(
        report,
        "| contender | N | at once | aggregate GiB/s median (min–max) | client CPU s/GiB median (min–max) | peak RSS MiB | RSS / N KiB | per extra upload KiB | sink CPU s/GiB | notes |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|---|---|---|---|---|");
    let mut group: Vec<&Row> = rows[first..].iter().collect();
    // By contender, then N.
    let order = |r: &Row| {
        rows[first..]
            .iter()
            .position(|o| o.client == r.client)
            .unwrap_or(0)
    };
    group.sort_by_key(|r| (order(r), r.n));
    for row in group {
        let mut note = row.note.clone().unwrap_or_default();
        let Some(f) = row.figures() else {
            let why = row.skipped.clone().unwrap_or_else(|| "no runs".into());
            let _ = writeln!(
                report,
                "| {} | {} | {} | {why} | | | | | | {note} |",
                row.client.name(),
                row.n,
                row.at_once
            );
            continue;
        };
        let extra = per_extra_upload_kib(rows, row).map_or("–".into(), |k| format!("{k:.1}"));
        // The sink's CPU seconds over the run's wall seconds.
        let sink_share = f.sink_cpu_per_gib * f.gib_per_s.0;
        if sink_share > 0.9 {
            let sep = if note.is_empty() { "" } else { "; " };
            note = format!(
                "{note}{sep}sink busy ({:.0}% of a CPU): measures the sink",
                sink_share * 100.0
            );
        }
        let _ = writeln!(
            report,
            "| {} | {} | {} | {:.2} ({:.2}–{:.2}) | {:.3} ({:.3}–{:.3}) | {:.1} | {:.1} | {extra} | {:.3} | {note} |",
            row.client.name(),
            row.n,
            row.at_once,
            f.gib_per_s.0,
            f.gib_per_s.1,
            f.gib_per_s.2,
            f.cpu_per_gib.0,
            f.cpu_per_gib.1,
            f.cpu_per_gib.2,
            f.rss_kib / 1024.0,
            f.rss_kib / row.n as f64,
            f.sink_cpu_per_gib,
        );
    }
    report.push('\n');
}
