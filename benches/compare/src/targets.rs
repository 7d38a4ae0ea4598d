//! The targets of the concurrent and small-upload parts, checked against the figures of
//! this run: each is met or not, and by how much.

use std::fmt::Write as _;

use crate::RAW_WRITE;
use crate::concurrent::{Client, Row, per_extra_upload_kib};
use crate::small;

/// N at which the scaling targets are checked.
const SCALE_N: usize = 1000;

/// One line: `value` against `bound`, where `at_most` says which side passes.
fn verdict(what: &str, value: f64, bound: f64, at_most: bool, unit: &str) -> String {
    let met = if at_most {
        value <= bound
    } else {
        value >= bound
    };
    let margin = if bound.abs() > f64::EPSILON {
        (value - bound).abs() / bound.abs() * 100.0
    } else {
        0.0
    };
    let side = match (met, at_most) {
        (true, true) => "under the bound",
        (true, false) => "over the bound",
        (false, true) => "over the bound",
        (false, false) => "under the bound",
    };
    format!(
        "- {} {what}: {value:.2}{unit} against {} {bound:.2}{unit}, {margin:.0}% {side}",
        if met { "**met**" } else { "**not met**" },
        if at_most { "at most" } else { "at least" },
    )
}

fn not_measured(what: &str, why: &str) -> String {
    format!("- not measured: {what} ({why})")
}

fn find(rows: &[Row], client: Client, tls: bool, size_mib: u64, n: usize) -> Option<&Row> {
    rows.iter()
        .find(|r| r.client == client && r.tls == tls && r.size_mib == size_mib && r.n == n)
}

/// Why a row has no figures, for a "not measured" line.
fn why(row: Option<&Row>, n: usize) -> String {
    match row {
        None => format!("N = {n} was not run"),
        Some(row) => row.skipped.clone().unwrap_or_else(|| "no figures".into()),
    }
}

pub fn report(
    options: &crate::Options,
    concurrent: &[Row],
    small: &[small::Row],
    out: &mut String,
) {
    let _ = writeln!(out, "## Targets\n");
    let chunkwire = Client::Chunkwire(None);
    let mut sizes: Vec<u64> = concurrent.iter().map(|r| r.size_mib).collect();
    sizes.dedup();
    if options.concurrent {
        for &size in &sizes {
            let one = find(concurrent, chunkwire, false, size, 1);
            let many = find(concurrent, chunkwire, false, size, SCALE_N);
            let label = format!("({size} MiB each, plain TCP)");
            match (one.and_then(Row::figures), many.and_then(Row::figures)) {
                (Some(one), Some(many)) => {
                    let _ = writeln!(
                        out,
                        "{}",
                        verdict(
                            &format!("aggregate throughput at N = {SCALE_N} over N = 1 {label}"),
                            many.gib_per_s.0 / one.gib_per_s.0,
                            0.9,
                            false,
                            "×"
                        )
                    );
                    let _ = writeln!(
                        out,
                        "{}",
                        verdict(
                            &format!("CPU per GiB at N = {SCALE_N} over N = 1 {label}"),
                            many.cpu_per_gib.0 / one.cpu_per_gib.0,
                            1.2,
                            true,
                            "×"
                        )
                    );
                }
                (o, m) => {
                    let reason = if o.is_none() {
                        why(one, 1)
                    } else {
                        why(many, SCALE_N)
                    };
                    let _ = writeln!(
                        out,
                        "{}",
                        not_measured(
                            &format!(
                                "throughput and CPU per GiB at N = {SCALE_N} against N = 1 {label}"
                            ),
                            &reason
                        )
                    );
                    let _ = m;
                }
            }
        }
        let bound = (RAW_WRITE + 8 * 1024) as f64 / 1024.0;
        let ns: Vec<usize> = options
            .concurrency
            .iter()
            .copied()
            .filter(|&n| n > 1)
            .collect();
        for &size in &sizes {
            for &n in &ns {
                let label = format!("N = {n}, {size} MiB each, plain TCP");
                let row = find(concurrent, chunkwire, false, size, n);
                let Some(mine) = row.and_then(|r| per_extra_upload_kib(concurrent, r)) else {
                    let _ = writeln!(
                        out,
                        "{}",
                        not_measured(&format!("memory per upload, {label}"), &why(row, n))
                    );
                    continue;
                };
                let _ = writeln!(
                    out,
                    "{}",
                    verdict(
                        &format!("memory per upload against 48 KiB chunk + 8 KiB, {label}"),
                        mine,
                        bound,
                        true,
                        " KiB"
                    )
                );
                for other in [
                    Client::Curl,
                    Client::Reqwest { multi: false },
                    Client::Reqwest { multi: true },
                ] {
                    let theirs = find(concurrent, other, false, size, n)
                        .and_then(|r| per_extra_upload_kib(concurrent, r));
                    let what = format!("memory per upload below {}'s, {label}", other.name());
                    let _ = writeln!(
                        out,
                        "{}",
                        match theirs {
                            Some(theirs) => verdict(&what, mine, theirs, true, " KiB"),
                            None => not_measured(&what, "no figure for it"),
                        }
                    );
                }
                let small_chunk = find(concurrent, Client::Chunkwire(Some("16k")), false, size, n);
                let curl = find(concurrent, Client::Curl, false, size, n)
                    .and_then(|r| per_extra_upload_kib(concurrent, r));
                if small_chunk.is_some() {
                    let what = format!(
                        "memory per upload with 16 KiB chunks, a third of curl's or less, {label}"
                    );
                    let mine = small_chunk.and_then(|r| per_extra_upload_kib(concurrent, r));
                    let _ = writeln!(
                        out,
                        "{}",
                        match (mine, curl) {
                            (Some(mine), Some(curl)) =>
                                verdict(&what, mine, curl / 3.0, true, " KiB"),
                            (None, _) => not_measured(&what, &why(small_chunk, n)),
                            (_, None) => not_measured(&what, "no curl figure"),
                        }
                    );
                }
            }
        }
    }
    if options.small {
        for connections in [1, 10] {
            let mine = small
                .iter()
                .find(|r| r.client == small::Client::Chunkwire && r.connections == connections);
            let label = if connections == 1 {
                "one connection".to_string()
            } else {
                format!("{connections} connections")
            };
            let what = format!("small uploads per second, 1.5 × the faster reqwest row's, {label}");
            let line = match (
                mine.and_then(small::Row::per_second),
                small::best_reqwest(small, connections),
            ) {
                (Some(mine), Some(theirs)) => verdict(&what, mine.0 / theirs, 1.5, false, "×"),
                (None, _) => not_measured(
                    &what,
                    &mine
                        .and_then(|r| r.skipped.clone())
                        .unwrap_or_else(|| "no figures".into()),
                ),
                (_, None) => not_measured(&what, "no reqwest figure"),
            };
            let _ = writeln!(out, "{line}");
        }
    }
    out.push('\n');
}
