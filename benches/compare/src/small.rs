//! The small-uploads part: many uploads of 1 KiB, one after another over one kept
//! connection, and over 10 connections at once.

use std::fmt::Write as _;

use crate::concurrent::curl_config;
use crate::measure::{Kind, Usage, run_client, with_sink};
use crate::{Options, Result, links, make_file, median};

const SIZE: u64 = 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Client {
    Chunkwire,
    Curl,
    /// reqwest streaming the file (chunked), or reading it whole first (Content-Length).
    Reqwest {
        whole: bool,
    },
}

pub struct Row {
    pub client: Client,
    /// 1: one kept connection, uploads one after another; more: that many at once.
    pub connections: usize,
    pub count: usize,
    pub skipped: Option<String>,
    pub samples: Vec<(Usage, f64)>,
}

impl Row {
    pub fn name(&self) -> String {
        let base = match self.client {
            Client::Chunkwire if self.connections > 1 => "chunkwire -Z",
            Client::Chunkwire => "chunkwire",
            Client::Curl if self.connections > 1 => "curl -Z",
            Client::Curl => "curl",
            Client::Reqwest { whole: false } => "reqwest",
            Client::Reqwest { whole: true } => "reqwest, whole file (Content-Length)",
        };
        if self.connections == 1 {
            format!("{base}, one connection")
        } else {
            format!("{base}, {} connections", self.connections)
        }
    }

    /// Median uploads per second (min, max), if measured.
    pub fn per_second(&self) -> Option<(f64, f64, f64)> {
        (self.skipped.is_none() && !self.samples.is_empty()).then(|| {
            median(
                self.samples
                    .iter()
                    .map(|(u, _)| self.count as f64 / u.seconds.max(1e-9))
                    .collect(),
            )
        })
    }
}

/// Runs the small-uploads part, appends its table to `report`, and returns its rows.
pub fn run(options: &Options, report: &mut String) -> Result<Vec<Row>> {
    let count = options.small_count;
    let source = options.work.join("small-1KiB.bin");
    make_file(&source, SIZE)?;
    let dir = options.work.join(format!("small-{count}"));
    let names = links(&dir, &source, "s", count)?;
    let mut rows = Vec::new();
    for connections in [1, 10] {
        let mut clients = vec![Client::Chunkwire];
        if options.curl {
            clients.push(Client::Curl);
        }
        clients.extend([
            Client::Reqwest { whole: false },
            Client::Reqwest { whole: true },
        ]);
        for client in clients {
            let skipped =
                (client == Client::Chunkwire && connections > 1 && !options.features.parallel)
                    .then(|| {
                        "not available yet (`chunkwire upload --help` lists no -Z/--parallel-max)"
                            .to_string()
                    });
            rows.push(Row {
                client,
                connections,
                count,
                skipped,
                samples: Vec::new(),
            });
        }
    }
    for run in 0..options.small_runs {
        for row in rows.iter_mut().filter(|r| r.skipped.is_none()) {
            let name = row.name();
            let (usage, sink_cpu) = with_sink(options, Kind::Http, false, None, |sink| {
                let host = sink.addr.replace("127.0.0.1", "localhost");
                let base = format!("http://{host}/small/");
                let command = command(options, row, &dir, &names, &base)?;
                run_client(options, &name, &command, Some(&dir))
            })?;
            eprintln!(
                "run {}/{}: {name:<52} {:>8.0} uploads/s {:>6.1} CPU µs/upload {:>6.1} MiB",
                run + 1,
                options.small_runs,
                count as f64 / usage.seconds.max(1e-9),
                usage.cpu_seconds * 1e6 / count as f64,
                usage.peak_rss_kib as f64 / 1024.0
            );
            row.samples.push((usage, sink_cpu));
        }
    }
    table(options, report, &rows);
    Ok(rows)
}

fn command(
    options: &Options,
    row: &Row,
    dir: &std::path::Path,
    names: &[String],
    base: &str,
) -> Result<Vec<String>> {
    let mut command: Vec<String> = Vec::new();
    let parallel = row.connections.to_string();
    match row.client {
        Client::Chunkwire => {
            command.extend([options.chunkwire.display().to_string(), "upload".into()]);
            if row.connections > 1 {
                command.extend(["-Z".into(), "--parallel-max".into(), parallel]);
            }
            command.extend(["-s", "-f", "-o", "/dev/null"].map(String::from));
            command.push(base.into());
            command.extend(names.iter().cloned());
        }
        Client::Curl => {
            let config = curl_config(options, dir, base, names)?;
            command.extend(["curl", "-sS", "--no-progress-meter", "-f"].map(String::from));
            if row.connections > 1 {
                command.extend(["-Z", "--parallel-immediate", "--parallel-max"].map(String::from));
                command.push(parallel);
            }
            command.extend(["-K".into(), config.display().to_string()]);
        }
        Client::Reqwest { whole } => {
            command.extend([
                std::env::current_exe()?.display().to_string(),
                "reqwest-many".into(),
                base.into(),
                ".".into(),
                "--concurrency".into(),
                parallel,
                "--body".into(),
                if whole { "whole" } else { "stream" }.into(),
            ]);
        }
    }
    Ok(command)
}

fn table(options: &Options, report: &mut String, rows: &[Row]) {
    let _ = writeln!(
        report,
        "## Many small uploads, plain TCP\n\n{} uploads of 1 KiB each, to distinct URL paths, one client process; {} run(s) each, in turn. One connection: uploads one after another on one kept-alive connection; 10 connections: 10 at a time. reqwest runs on a current-thread runtime (10 connections: 10 tasks on one client).\n",
        options.small_count, options.small_runs
    );
    let _ = writeln!(
        report,
        "| contender | uploads/s median (min–max) | client CPU µs/upload | peak RSS MiB | sink CPU µs/upload | × best reqwest |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|---|");
    for row in rows {
        let Some(rate) = row.per_second() else {
            let why = row.skipped.clone().unwrap_or_else(|| "no runs".into());
            let _ = writeln!(report, "| {} | {why} | | | | |", row.name());
            continue;
        };
        let per = |f: &dyn Fn(&(Usage, f64)) -> f64| median(row.samples.iter().map(f).collect()).0;
        let cpu = per(&|(u, _)| u.cpu_seconds * 1e6 / row.count as f64);
        let rss = per(&|(u, _)| u.peak_rss_kib as f64 / 1024.0);
        let sink = per(&|(_, s)| s * 1e6 / row.count as f64);
        let ratio = best_reqwest(rows, row.connections)
            .map_or("–".into(), |best| format!("{:.2}", rate.0 / best));
        let _ = writeln!(
            report,
            "| {} | {:.0} ({:.0}–{:.0}) | {cpu:.1} | {rss:.1} | {sink:.1} | {ratio} |",
            row.name(),
            rate.0,
            rate.1,
            rate.2,
        );
    }
    report.push('\n');
}

/// The faster reqwest row's median uploads per second at this many connections.
pub fn best_reqwest(rows: &[Row], connections: usize) -> Option<f64> {
    rows.iter()
        .filter(|r| matches!(r.client, Client::Reqwest { .. }) && r.connections == connections)
        .filter_map(|r| r.per_second().map(|p| p.0))
        .reduce(f64::max)
}
