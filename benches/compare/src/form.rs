//! The form part (`--form`): one `multipart/form-data` upload of a file part (1 GiB; 4 MiB
//! in quick mode) and two text fields, by chunkwire `-F`, requests' `files=`,
//! requests-toolbelt's `MultipartEncoder`, curl `-F` and reqwest's multipart form, in turn
//! (A B A B), with chunkwire's plain upload of the same file as its reference; all to
//! `chunkwire sink`, which decodes the form and reports every part. Each run's report is
//! checked: a run counts only if the sink saw the whole form (the file part at its size,
//! the closing boundary, no error). Then issue 13's targets, met or not.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::measure::{Kind, run_client, with_sink};
use crate::{GIB, MIB, Options, Result, command_exists, make_file, median};

/// The two text fields every contender sends (form_clients.py has the same).
pub const FIELDS: ((&str, &str), (&str, &str)) = (
    ("title", "benchmark upload"),
    ("note", "a 1 GiB file and two text fields"),
);

/// Names of the rows the targets compare.
const FORM: &str = "chunkwire -F";
const PLAIN: &str = "chunkwire, plain upload (Content-Length)";

struct Contender {
    name: String,
    /// `{URL}` and `{OUT}` (where the response body goes) are filled in per run.
    command: Vec<String>,
    /// A plain upload: its report has no form to check.
    plain: bool,
    /// Why it does not run, if it does not.
    skipped: Option<String>,
}

#[derive(Clone, Copy)]
struct Sample {
    seconds: f64,
    cpu_seconds: f64,
    peak_rss_kib: u64,
    sink_cpu_seconds: f64,
}

/// What the form part measured, for the targets.
struct Row {
    name: String,
    skipped: Option<String>,
    samples: Vec<Sample>,
}

/// Runs the form part and appends its table and targets to `report`.
pub fn run(options: &Options, report: &mut String) -> Result<()> {
    let size = options.form_size_mib;
    let file = options.work.join(format!("form-{size}MiB.bin"));
    make_file(&file, size * MIB)?;
    let bytes = size * MIB;
    let contenders = contenders(options, &file);
    let mut rows: Vec<Row> = contenders
        .iter()
        .map(|c| Row {
            name: c.name.clone(),
            skipped: c.skipped.clone(),
            samples: Vec::new(),
        })
        .collect();
    for run in 0..options.form_runs {
        for (contender, row) in contenders.iter().zip(rows.iter_mut()) {
            if contender.skipped.is_some() {
                continue;
            }
            let sample = run_once(options, contender, &file, bytes)?;
            eprintln!(
                "form run {}/{}: {:<44} {:>6.2} GiB/s {:>6.2} CPU s/GiB {:>7.1} MiB",
                run + 1,
                options.form_runs,
                contender.name,
                bytes as f64 / GIB / sample.seconds.max(1e-9),
                sample.cpu_seconds / (bytes as f64 / GIB),
                sample.peak_rss_kib as f64 / 1024.0
            );
            row.samples.push(sample);
        }
    }
    table(report, size, bytes, &rows);
    targets(report, bytes, &rows);
    Ok(())
}

fn contenders(options: &Options, file: &Path) -> Vec<Contender> {
    let me = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let chunkwire = options.chunkwire.display().to_string();
    let file_arg = file.display().to_string();
    let (title, note) = FIELDS;
    let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut all = vec![
        Contender {
            name: PLAIN.into(),
            command: strings(&[
                &chunkwire,
                "upload",
                "-s",
                "-f",
                "--content-length",
                "-o",
                "{OUT}",
                "{URL}",
                &file_arg,
            ]),
            plain: true,
            skipped: None,
        },
        Contender {
            name: FORM.into(),
            command: strings(&[
                &chunkwire,
                "upload",
                "-s",
                "-f",
                "-o",
                "{OUT}",
                "-F",
                &format!("{}={}", title.0, title.1),
                "-F",
                &format!("{}={}", note.0, note.1),
                "-F",
                &format!("file=@{file_arg};type=application/octet-stream"),
                "{URL}",
            ]),
            plain: false,
            skipped: (!options.features.form).then(|| {
                "not available yet (`chunkwire upload --help` lists no -F/--form)".to_owned()
            }),
        },
    ];
    let python_missing = python_missing();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("form_clients.py");
    for (mode, name) in [
        ("files", "requests files="),
        ("toolbelt", "requests-toolbelt MultipartEncoder"),
    ] {
        all.push(Contender {
            name: name.into(),
            command: strings(&[
                "python3",
                &script.display().to_string(),
                mode,
                "{URL}",
                &file_arg,
                "{OUT}",
            ]),
            plain: false,
            skipped: python_missing.clone(),
        });
    }
    all.push(Contender {
        name: "curl -F".into(),
        command: strings(&[
            "curl",
            "-sS",
            "-f",
            "-o",
            "{OUT}",
            "-F",
            &format!("{}={}", title.0, title.1),
            "-F",
            &format!("{}={}", note.0, note.1),
            "-F",
            &format!("file=@{file_arg};type=application/octet-stream"),
            "{URL}",
        ]),
        plain: false,
        skipped: (!options.curl).then(|| "curl is not installed".to_owned()),
    });
    all.push(Contender {
        name: "reqwest multipart".into(),
        command: strings(&[&me, "reqwest-form", "{URL}", &file_arg, "{OUT}"]),
        plain: false,
        skipped: None,
    });
    all
}

/// Why the Python contenders cannot run here, if they cannot.
fn python_missing() -> Option<String> {
    if !command_exists("python3") {
        return Some("python3 is not installed".into());
    }
    let imports = std::process::Command::new("python3")
        .args(["-c", "import requests, requests_toolbelt"])
        .output();
    match imports {
        Ok(o) if o.status.success() => None,
        _ => Some(
            "requests or requests-toolbelt is not installed (pip install -r benches/compare/requirements.txt)"
                .into(),
        ),
    }
}

fn run_once(options: &Options, contender: &Contender, file: &Path, bytes: u64) -> Result<Sample> {
    let out: PathBuf = options.work.join("form-response.json");
    let _ = std::fs::remove_file(&out);
    let (usage, sink_cpu_seconds) = with_sink(options, Kind::Http, false, None, |sink| {
        let url = format!("http://{}/form", sink.addr);
        let command: Vec<String> = contender
            .command
            .iter()
            .map(|a| {
                a.replace("{URL}", &url)
                    .replace("{OUT}", &out.display().to_string())
            })
            .collect();
        run_client(options, &contender.name, &command, None)
    })?;
    let response = std::fs::read_to_string(&out).map_err(|e| {
        format!(
            "{}: no response body in {}: {e}",
            contender.name,
            out.display()
        )
    })?;
    check_report(&contender.name, &response, file, bytes, contender.plain)?;
    Ok(Sample {
        seconds: usage.seconds,
        cpu_seconds: usage.cpu_seconds,
        peak_rss_kib: usage.peak_rss_kib,
        sink_cpu_seconds,
    })
}

/// The sink's report says the whole upload arrived: for a form, three parts, the file part
/// named after the file at its full size, and the closing boundary.
fn check_report(name: &str, report: &str, file: &Path, bytes: u64, plain: bool) -> Result<()> {
    let fail = |what: &str| Err(format!("{name}: the sink's report {what}: {report}").into());
    if plain {
        if !report.contains(&format!("\"bytes\":{bytes},")) {
            return fail("does not count the whole file");
        }
        return Ok(());
    }
    let Some(form) = report.find("\"form\":").map(|at| &report[at..]) else {
        return fail("has no form");
    };
    let file_name = file.file_name().unwrap_or_default().to_string_lossy();
    let file_part = format!(
        "{{\"name\":\"file\",\"filename\":\"{file_name}\",\"content_type\":\"application/octet-stream\",\"bytes\":{bytes},"
    );
    if !form.contains(&file_part) {
        return fail("has no file part of the whole size");
    }
    if form.matches("{\"name\":").count() != 3 {
        return fail("does not have three parts");
    }
    if !form.contains("\"complete\":true,\"error\":null") {
        return fail("says the form is incomplete or broken");
    }
    Ok(())
}

struct Summary {
    gib_per_s: (f64, f64, f64),
    cpu_per_gib: (f64, f64, f64),
    rss_mib: (f64, f64, f64),
    sink_cpu_share: f64,
}

fn summarise(bytes: u64, row: &Row) -> Option<Summary> {
    if row.samples.is_empty() {
        return None;
    }
    let gib = bytes as f64 / GIB;
    let of = |f: &dyn Fn(&Sample) -> f64| median(row.samples.iter().map(f).collect());
    Some(Summary {
        gib_per_s: of(&|s| gib / s.seconds.max(1e-9)),
        cpu_per_gib: of(&|s| s.cpu_seconds / gib),
        rss_mib: of(&|s| s.peak_rss_kib as f64 / 1024.0),
        sink_cpu_share: of(&|s| s.sink_cpu_seconds / s.seconds.max(1e-9)).0,
    })
}

fn table(report: &mut String, size: u64, bytes: u64, rows: &[Row]) {
    let _ = writeln!(
        report,
        "## A form: a {size} MiB file part and two text fields, plain TCP\n"
    );
    let _ = writeln!(
        report,
        "| contender | GiB/s median (min–max) | client CPU s/GiB median (min–max) | peak RSS MiB median (min–max) | sink CPU |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|");
    for row in rows {
        match (&row.skipped, summarise(bytes, row)) {
            (Some(reason), _) => {
                let _ = writeln!(report, "| {} | {reason} | | | |", row.name);
            }
            (None, None) => {
                let _ = writeln!(report, "| {} | no runs | | | |", row.name);
            }
            (None, Some(s)) => {
                let _ = writeln!(
                    report,
                    "| {} | {:.2} ({:.2}–{:.2}) | {:.3} ({:.3}–{:.3}) | {:.2} ({:.2}–{:.2}) | {:.0}%{} |",
                    row.name,
                    s.gib_per_s.0,
                    s.gib_per_s.1,
                    s.gib_per_s.2,
                    s.cpu_per_gib.0,
                    s.cpu_per_gib.1,
                    s.cpu_per_gib.2,
                    s.rss_mib.0,
                    s.rss_mib.1,
                    s.rss_mib.2,
                    s.sink_cpu_share * 100.0,
                    if s.sink_cpu_share > 0.9 {
                        " (sink busy: measures the sink)"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    report.push('\n');
}

/// Issue 13's targets: chunkwire -F's peak RSS within 0.25 MiB of its plain upload and its
/// CPU per GiB within 1.1 times it, and ahead of every contender on both.
fn targets(report: &mut String, bytes: u64, rows: &[Row]) {
    let _ = writeln!(report, "### Form targets\n");
    let find = |name: &str| {
        rows.iter()
            .find(|r| r.name == name)
            .and_then(|r| summarise(bytes, r))
    };
    let (Some(form), Some(plain)) = (find(FORM), find(PLAIN)) else {
        let _ = writeln!(
            report,
            "- not checked: chunkwire -F or its plain upload did not run\n"
        );
        return;
    };
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    let rss_delta = form.rss_mib.0 - plain.rss_mib.0;
    let _ = writeln!(
        report,
        "- peak RSS within 0.25 MiB of the plain upload: {} ({:+.2} MiB: {:.2} against {:.2})",
        verdict(rss_delta <= 0.25),
        rss_delta,
        form.rss_mib.0,
        plain.rss_mib.0
    );
    let cpu_ratio = form.cpu_per_gib.0 / plain.cpu_per_gib.0.max(1e-9);
    let _ = writeln!(
        report,
        "- CPU per GiB within 1.1 times the plain upload: {} ({cpu_ratio:.2} times: {:.3} against {:.3} s/GiB)",
        verdict(cpu_ratio <= 1.1),
        form.cpu_per_gib.0,
        plain.cpu_per_gib.0
    );
    for row in rows {
        if row.name == FORM || row.name == PLAIN {
            continue;
        }
        let Some(other) = summarise(bytes, row) else {
            let _ = writeln!(
                report,
                "- ahead of {}: not checked (it did not run)",
                row.name
            );
            continue;
        };
        let _ = writeln!(
            report,
            "- ahead of {} on CPU and RSS: {} (CPU {:.3} against {:.3} s/GiB, RSS {:.2} against {:.2} MiB)",
            row.name,
            verdict(form.cpu_per_gib.0 < other.cpu_per_gib.0 && form.rss_mib.0 < other.rss_mib.0),
            form.cpu_per_gib.0,
            other.cpu_per_gib.0,
            form.rss_mib.0,
            other.rss_mib.0
        );
    }
    report.push('\n');
}
