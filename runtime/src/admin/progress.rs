//! Progress of long operations, on stderr: slave construction, reconstruction and partition preparation
//! ([`Progress::build`]), dump and restore ([`Progress::transfer`]).
//!
//! On a terminal it is a live indicatif bar with items done / total, percentage, rate and ETA. Otherwise (a log
//! file, a pipe, CI) it is one plain line per second in flare-tools' format (admin-tool.md §5), so existing log
//! scrapers keep working:
//!
//! ```text
//! 866/100001 (role = slave, state = prepare) [ETA: 705 sec (elapsed = 6 sec)] 0%, 144 items/s
//! ```
//!
//! The percentage and rate after the bracket are our addition (admin-tool.md §7). The line functions are pure and
//! unit-tested; [`Progress`] only decides where and when they are drawn.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use flare_core::node_map::{Role, State};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One look at a node being built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildSample {
    /// Items copied so far.
    pub done: u64,
    /// Items to copy, when known (the master's `curr_items`, or the node's `reconstruction_total`).
    pub total: Option<u64>,
    /// The node's role in the index's `stats nodes`.
    pub role: Role,
    /// The node's state in the index's `stats nodes`.
    pub state: State,
}

/// What a transfer counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Items (dump).
    Items,
    /// Bytes of the input file (restore).
    Bytes,
}

/// A progress display.
pub struct Progress {
    started: Instant,
    bar: Option<ProgressBar>,
    template: &'static str,
    last_line: Option<Instant>,
    last_message: Option<Instant>,
    transfer: Option<(String, Unit, Option<u64>)>,
    done: u64,
    final_line: Option<String>,
}

// Bar layouts. Rates are computed here (whole items per second), not by indicatif, whose `{per_sec}` prints four
// decimals.
const BUILD_TOTAL: &str =
    "{spinner} [{elapsed_precise}] [{wide_bar}] {pos}/{len} ({percent}%) ETA {eta} {msg}";
const BUILD_COUNT: &str = "{spinner} [{elapsed_precise}] {pos} items {msg}";
const ITEMS_TOTAL: &str =
    "{spinner} {prefix} [{elapsed_precise}] [{wide_bar}] {pos}/{len} items ({percent}%) ETA {eta} {msg}";
const ITEMS_COUNT: &str = "{spinner} {prefix} [{elapsed_precise}] {pos} items {msg}";
const BYTES_TOTAL: &str = "{spinner} {prefix} [{elapsed_precise}] [{wide_bar}] {binary_bytes}/{binary_total_bytes} ({percent}%) {binary_bytes_per_sec} ETA {eta}";
const BYTES_COUNT: &str =
    "{spinner} {prefix} [{elapsed_precise}] {binary_bytes} {binary_bytes_per_sec}";

/// Flare's ETA: ⌊(total − done) / (done / elapsed)⌋, `None` (shown `n/a`) while elapsed or done is 0.
pub fn eta_secs(done: u64, total: u64, elapsed: Duration) -> Option<u64> {
    let secs = elapsed.as_secs_f64();
    if done == 0 || elapsed.as_secs() == 0 {
        return None;
    }
    let rate = done as f64 / secs;
    Some((total.saturating_sub(done) as f64 / rate).floor() as u64)
}

/// flare-tools' build line (admin-tool.md §5), with percentage and rate appended when they are known.
pub fn build_line(s: &BuildSample, elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    let head = match s.total {
        Some(t) => format!("{}/{t}", s.done),
        None => s.done.to_string(),
    };
    let eta = s
        .total
        .and_then(|t| eta_secs(s.done, t, elapsed))
        .map_or("n/a".to_string(), |e| e.to_string());
    let mut line = format!(
        "{head} (role = {}, state = {}) [ETA: {eta} sec (elapsed = {secs} sec)]",
        s.role, s.state
    );
    if secs > 0 {
        let rate = (s.done as f64 / elapsed.as_secs_f64()).round() as u64;
        match s.total {
            Some(t) if t > 0 => {
                let pct = s.done.min(t).saturating_mul(100) / t;
                line.push_str(&format!(" {pct}%, {rate} items/s"));
            }
            _ => line.push_str(&format!(" {rate} items/s")),
        }
    }
    line
}

/// A transfer line: `dump node1:12121: 1200/3000 items (40%) [ETA: 2 sec (elapsed = 1 sec)]`.
pub fn transfer_line(
    label: &str,
    done: u64,
    total: Option<u64>,
    unit: Unit,
    elapsed: Duration,
) -> String {
    let unit_name = match unit {
        Unit::Items => "items",
        Unit::Bytes => "bytes",
    };
    let secs = elapsed.as_secs();
    match total {
        Some(t) => {
            let pct = done
                .min(t)
                .saturating_mul(100)
                .checked_div(t)
                .unwrap_or(100);
            let eta = eta_secs(done, t, elapsed).map_or("n/a".into(), |e| e.to_string());
            format!(
                "{label}: {done}/{t} {unit_name} ({pct}%) [ETA: {eta} sec (elapsed = {secs} sec)]"
            )
        }
        None => format!("{label}: {done} {unit_name} [elapsed = {secs} sec]"),
    }
}

impl Progress {
    /// A build display; a bar when stderr is a terminal.
    pub fn build() -> Progress {
        Progress::new(BUILD_COUNT, None, None)
    }

    /// A transfer display labelled `label` (`dump node1:12121`), out of `total` when known.
    pub fn transfer(label: &str, unit: Unit, total: Option<u64>) -> Progress {
        let template = match (unit, total) {
            (Unit::Items, Some(_)) => ITEMS_TOTAL,
            (Unit::Items, None) => ITEMS_COUNT,
            (Unit::Bytes, Some(_)) => BYTES_TOTAL,
            (Unit::Bytes, None) => BYTES_COUNT,
        };
        let mut p = Progress::new(template, Some(label), total);
        p.transfer = Some((label.to_string(), unit, total));
        p
    }

    fn new(template: &'static str, prefix: Option<&str>, total: Option<u64>) -> Progress {
        let bar = io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
            set_style(&bar, template);
            if let Some(prefix) = prefix {
                bar.set_prefix(prefix.to_string());
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            started: Instant::now(),
            bar,
            template,
            last_line: None,
            last_message: None,
            transfer: None,
            done: 0,
            final_line: None,
        }
    }

    /// Time since the display started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Shows a build sample: redraws the bar, or writes one plain line (the caller samples once per second).
    pub fn build_update(&mut self, s: &BuildSample) {
        let line = build_line(s, self.elapsed());
        if self.bar.is_some() {
            self.restyle(if s.total.is_some() {
                BUILD_TOTAL
            } else {
                BUILD_COUNT
            });
            let rate = self.rate(s.done);
            if let Some(bar) = &self.bar {
                if let Some(t) = s.total {
                    bar.set_length(t.max(s.done));
                }
                bar.set_position(s.done);
                bar.set_message(format!(
                    "(role = {}, state = {}) {rate} items/s",
                    s.role, s.state
                ));
            }
        } else {
            eprintln!("{line}");
        }
        self.final_line = Some(line);
    }

    /// Counts a transfer forward to `done`; plain lines are written at most once per second.
    pub fn transfer_update(&mut self, done: u64) {
        self.done = done;
        let now = Instant::now();
        let every = |last: Option<Instant>, period: Duration| {
            last.is_none_or(|t| now.duration_since(t) >= period)
        };
        match &self.bar {
            Some(bar) => {
                bar.set_position(done);
                let items = matches!(self.transfer, Some((_, Unit::Items, _)));
                if items && every(self.last_message, Duration::from_millis(250)) {
                    self.last_message = Some(now);
                    bar.set_message(format!("{} items/s", self.rate(done)));
                }
            }
            None => {
                if every(self.last_line, Duration::from_secs(1)) {
                    self.last_line = Some(now);
                    if let Some(line) = self.transfer_text() {
                        eprintln!("{line}");
                    }
                }
            }
        }
    }

    /// Ends the display. A bar is replaced by the last plain line, so a terminal keeps the same record a log
    /// would.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            if let Some(line) = self.final_line.take() {
                eprintln!("{line}");
            }
        }
        if self.transfer.is_some() {
            if let Some(line) = self.transfer_text() {
                eprintln!("{line}");
            }
        }
        let _ = io::stderr().flush();
    }

    fn restyle(&mut self, template: &'static str) {
        if let Some(bar) = &self.bar {
            if self.template != template {
                set_style(bar, template);
            }
        }
        self.template = template;
    }

    fn rate(&self, done: u64) -> u64 {
        let secs = self.elapsed().as_secs_f64();
        if secs < 0.001 {
            0
        } else {
            (done as f64 / secs).round() as u64
        }
    }

    fn transfer_text(&self) -> Option<String> {
        let (label, unit, total) = self.transfer.as_ref()?;
        Some(transfer_line(
            label,
            self.done,
            *total,
            *unit,
            self.elapsed(),
        ))
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn set_style(bar: &ProgressBar, template: &str) {
    // The templates are constants of this file; a bad one is a bug caught by the unit test below.
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slave(done: u64, total: u64, state: State) -> BuildSample {
        BuildSample {
            done,
            total: Some(total),
            role: Role::Slave,
            state,
        }
    }

    #[test]
    fn lines_match_the_tutorial() {
        let s = Duration::from_secs;
        assert_eq!(
            build_line(&slave(0, 100001, State::Prepare), s(3)),
            "0/100001 (role = slave, state = prepare) [ETA: n/a sec (elapsed = 3 sec)] 0%, 0 items/s"
        );
        assert!(
            build_line(&slave(866, 100001, State::Prepare), s(6)).starts_with(
                "866/100001 (role = slave, state = prepare) [ETA: 686 sec (elapsed = 6 sec)]"
            )
        );
        assert!(
            build_line(&slave(100001, 100001, State::Active), s(48)).starts_with(
                "100001/100001 (role = slave, state = active) [ETA: 0 sec (elapsed = 48 sec)] 100%"
            )
        );
        let master = BuildSample {
            done: 0,
            total: None,
            role: Role::Master,
            state: State::Active,
        };
        assert_eq!(
            build_line(&master, s(0)),
            "0 (role = master, state = active) [ETA: n/a sec (elapsed = 0 sec)]"
        );
    }

    #[test]
    fn eta_is_flares_formula() {
        let s = Duration::from_secs;
        assert_eq!(eta_secs(5, 100001, s(5)), Some(99996));
        assert_eq!(eta_secs(0, 10, s(5)), None);
        assert_eq!(eta_secs(5, 10, s(0)), None);
        assert_eq!(eta_secs(20, 10, s(1)), Some(0), "more than the total");
    }

    #[test]
    fn transfer_lines() {
        let s = Duration::from_secs;
        assert_eq!(
            transfer_line("dump n:1", 1200, Some(3000), Unit::Items, s(1)),
            "dump n:1: 1200/3000 items (40%) [ETA: 1 sec (elapsed = 1 sec)]"
        );
        assert_eq!(
            transfer_line("restore", 10, None, Unit::Bytes, s(2)),
            "restore: 10 bytes [elapsed = 2 sec]"
        );
    }

    #[test]
    fn bar_templates_parse() {
        for t in [
            BUILD_TOTAL,
            BUILD_COUNT,
            ITEMS_TOTAL,
            ITEMS_COUNT,
            BYTES_TOTAL,
            BYTES_COUNT,
        ] {
            assert!(ProgressStyle::with_template(t).is_ok(), "{t}");
        }
    }
}
