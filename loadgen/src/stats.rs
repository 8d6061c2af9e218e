//! Latency summaries, error tallies, the server's memory and CPU, and printing the report.

use std::{collections::BTreeMap, time::Duration};

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;
use tonic::Status;

/// A latency histogram in microseconds, from 1 µs to an hour, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Records `latency` in a [`histogram`].
pub fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    histogram.saturating_record(latency.as_micros().try_into().unwrap_or(u64::MAX));
}

/// A latency distribution, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// How many were measured.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// The largest.
    pub max_ms: f64,
}

impl Latency {
    /// Summarizes a [`histogram`].
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            count: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// Failures counted by name: a gRPC status code, an ErrorEvent code (RATE_LIMITED, ...), or a
/// load-generator condition (ACK_TIMEOUT, ...).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct Errors(BTreeMap<String, u64>);

impl Errors {
    /// Counts one failure named `name`.
    pub fn add(&mut self, name: &str) {
        *self.0.entry(name.to_owned()).or_default() += 1;
    }

    /// Counts a failed call by its status code.
    pub fn status(&mut self, status: &Status) {
        self.add(&format!("{:?}", status.code()));
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Errors) {
        for (name, count) in &other.0 {
            *self.0.entry(name.clone()).or_default() += count;
        }
    }

    /// All failures together.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

/// The server process, read from /proc when its pid was given.
pub struct ServerProcess {
    /// The processes (the nodes of a cluster); none without `--server-pid` (then every reading
    /// is None).
    processes: Vec<procfs::process::Process>,
}

impl ServerProcess {
    /// The server processes with these pids; fails when one cannot be read.
    pub fn new(pids: &[i32]) -> anyhow::Result<Self> {
        let processes = pids
            .iter()
            .map(|pid| procfs::process::Process::new(*pid))
            .collect::<Result<_, _>>()?;
        Ok(Self { processes })
    }

    /// Their resident memory now, in bytes, all together.
    pub fn rss_bytes(&self) -> Option<u64> {
        self.sum(|stat| stat.rss * procfs::page_size())
    }

    /// CPU time they have used so far (user and system), in seconds, all together.
    pub fn cpu_secs(&self) -> Option<f64> {
        let ticks = self.sum(|stat| stat.utime + stat.stime)?;
        Some(ticks as f64 / procfs::ticks_per_second() as f64)
    }

    fn sum(&self, of: impl Fn(procfs::process::Stat) -> u64) -> Option<u64> {
        if self.processes.is_empty() {
            return None;
        }
        self.processes
            .iter()
            .map(|process| process.stat().ok().map(&of))
            .sum()
    }
}

/// CPU the server used over a phase.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    /// CPU seconds (user and system) used during the phase.
    pub cpu_secs: f64,
    /// The same per wall-clock second, as a percentage of one core.
    pub percent_of_one_core: f64,
}

impl CpuUse {
    /// From CPU readings at the start and end of a phase that lasted `wall`.
    pub fn between(before: Option<f64>, after: Option<f64>, wall: Duration) -> Option<Self> {
        let cpu_secs = after? - before?;
        Some(Self {
            cpu_secs,
            percent_of_one_core: 100.0 * cpu_secs / wall.as_secs_f64().max(1e-9),
        })
    }
}

/// Prints `report` for people (one `key: value` line per figure), then as one JSON line, which is
/// always the last line of stdout.
pub fn print_report(report: &Value) {
    print_lines("", report);
    println!("{report}");
}

/// One line per leaf of `value`, its path as the key.
fn print_lines(path: &str, value: &Value) {
    match value {
        Value::Object(fields) if fields.is_empty() => println!("{path}: none"),
        Value::Object(fields) => {
            for (key, field) in fields {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                print_lines(&path, field);
            }
        }
        Value::Null => println!("{path}: (not measured)"),
        leaf => println!("{path}: {leaf}"),
    }
}
