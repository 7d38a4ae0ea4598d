//! The progress meter of `chunkwire upload` on standard error: a bar with the bytes, the
//! rate and the time left when the size is known; the bytes, the rate and the time so far
//! when it is not. Redrawn in place at most ten times a second.
//!
//! Written here rather than taken from a progress-bar crate: indicatif, which the CLI used
//! first, calls `pow`, and linking libm for it alone added 0.3 MiB to the resident memory
//! of every upload, a tenth of the peak-memory budget (README "Benchmark").

use std::io::Write;
use std::time::Duration;

use chunkwire::UploadProgress;

const REDRAW_EVERY: Duration = Duration::from_millis(100);
const BAR_WIDTH: usize = 30;

/// Draws progress lines on a writer (standard error in the CLI).
pub struct ProgressMeter<W: Write> {
    out: W,
    /// The upload's elapsed time at the last drawing: the figures carry the clock, so the
    /// meter reads no clock of its own.
    last_draw: Option<Duration>,
    latest: Option<UploadProgress>,
    /// Characters of the line on screen, so a shorter line can blank the rest.
    drawn_len: usize,
}

impl<W: Write> ProgressMeter<W> {
    pub fn new(out: W) -> Self {
        ProgressMeter {
            out,
            last_draw: None,
            latest: None,
            drawn_len: 0,
        }
    }

    /// Takes the latest figures; redraws when the last drawing is old enough.
    pub fn update(&mut self, progress: &UploadProgress) {
        self.latest = Some(*progress);
        let now = progress.elapsed;
        if self
            .last_draw
            .is_some_and(|at| now.saturating_sub(at) < REDRAW_EVERY)
        {
            return;
        }
        self.last_draw = Some(now);
        self.draw(progress);
    }

    /// Draws the final figures and ends the line.
    pub fn finish(&mut self) {
        if let Some(progress) = self.latest {
            self.draw(&progress);
        }
        if self.drawn_len > 0 {
            let _ = self.out.write_all(b"\n");
            let _ = self.out.flush();
            self.drawn_len = 0;
        }
    }

    fn draw(&mut self, progress: &UploadProgress) {
        let line = progress_line(progress);
        let len = line.chars().count();
        let blank = self.drawn_len.saturating_sub(len);
        let _ = write!(self.out, "\r{line}{:blank$}", "");
        let _ = self.out.flush();
        self.drawn_len = len;
    }
}

/// One line of progress, without the carriage return.
pub fn progress_line(progress: &UploadProgress) -> String {
    let sent = progress.body_bytes_sent;
    let rate = progress.bytes_per_second;
    match progress.total {
        Some(total) => {
            let fraction = if total == 0 {
                1.0
            } else {
                (sent as f64 / total as f64).min(1.0)
            };
            let filled = (fraction * BAR_WIDTH as f64) as usize;
            let left = if sent >= total {
                String::from("0:00")
            } else if rate >= 1.0 {
                clock((total - sent) as f64 / rate)
            } else {
                String::from("--:--")
            };
            format!(
                "[{}{}] {:>3}% {} / {} {}/s eta {left}",
                "#".repeat(filled),
                "-".repeat(BAR_WIDTH - filled),
                (fraction * 100.0) as u32,
                bytes(sent),
                bytes(total),
                bytes(rate as u64),
            )
        }
        None => format!(
            "{} sent {}/s {}",
            bytes(sent),
            bytes(rate as u64),
            clock(progress.elapsed.as_secs_f64())
        ),
    }
}

/// A byte count in binary units, one decimal past KiB.
fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if count < 1024 {
        return format!("{count} B");
    }
    let mut value = count as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Seconds as m:ss, or h:mm:ss past an hour.
fn clock(seconds: f64) -> String {
    let whole = seconds.max(0.0).round() as u64;
    let (hours, minutes, seconds) = (whole / 3600, whole / 60 % 60, whole % 60);
    if hours > 0 {
        format!("{hours}:{minutes:02}:{seconds:02}")
    } else {
        format!("{minutes}:{seconds:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(sent: u64, total: Option<u64>, seconds: f64) -> UploadProgress {
        UploadProgress {
            body_bytes_sent: sent,
            total,
            elapsed: Duration::from_secs_f64(seconds),
            bytes_per_second: sent as f64 / seconds,
        }
    }

    #[test]
    fn a_known_size_shows_a_bar_and_the_time_left() {
        let mib = 1024 * 1024;
        assert_eq!(
            progress_line(&at(30 * mib, Some(120 * mib), 3.0)),
            "[#######-----------------------]  25% 30.0 MiB / 120.0 MiB 10.0 MiB/s eta 0:09"
        );
        assert_eq!(
            progress_line(&at(120 * mib, Some(120 * mib), 4.0)),
            "[##############################] 100% 120.0 MiB / 120.0 MiB 30.0 MiB/s eta 0:00"
        );
        assert_eq!(
            progress_line(&at(0, Some(0), 1.0)),
            "[##############################] 100% 0 B / 0 B 0 B/s eta 0:00"
        );
        assert!(progress_line(&at(0, Some(10), 1.0)).ends_with("eta --:--"));
    }

    #[test]
    fn an_unknown_size_shows_bytes_rate_and_time() {
        let gib = 1u64 << 30;
        assert_eq!(
            progress_line(&at(5 * gib / 2, None, 3725.0)),
            "2.5 GiB sent 703.7 KiB/s 1:02:05"
        );
        assert_eq!(
            progress_line(&at(1023, None, 1.0)),
            "1023 B sent 1023 B/s 0:01"
        );
    }

    #[test]
    fn redraws_are_spaced_and_a_shorter_line_blanks_the_longer_one() {
        let mut meter = ProgressMeter::new(Vec::new());
        meter.update(&at(1 << 20, None, 1.0));
        // Within 100 ms of the first drawing: remembered, not drawn.
        meter.update(&at(5, None, 1.0));
        let first = String::from_utf8(meter.out.clone()).unwrap();
        assert_eq!(first, "\r1.0 MiB sent 1.0 MiB/s 0:01");
        meter.finish();
        let all = String::from_utf8(meter.out).unwrap();
        let last = &all[first.len()..];
        assert_eq!(last, format!("\r5 B sent 5 B/s 0:01{}\n", " ".repeat(8)));
    }

    #[test]
    fn nothing_is_drawn_when_nothing_was_sent() {
        let mut meter = ProgressMeter::new(Vec::new());
        meter.finish();
        assert!(meter.out.is_empty());
    }
}
