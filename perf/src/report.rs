//! Run reports: what a run measured, the settings that produced it, and the machine it ran on, as
//! JSON and as a table for the terminal.
//!
//! A [`RunReport`] is one run. Its JSON form (schema [`RUN_SCHEMA`]) has the settings at the top
//! level next to the results, so that `jq .ops_per_sec` and `jq .workload` both work; every field is
//! described in `perf/README.md`. Fields that only a dinomo target can fill (`round_trips_per_op`,
//! `verbs_per_op`, `bytes_per_op`, `hit_ratio`, `by_outcome`, `dinomo_counters`) are `null` when the
//! target reported no dinomo counters (Redis).
//!
//! Per-operation figures divide dinomo's counters (grown over the run phase only) by the operations
//! the driver completed, so a read-modify-write is one operation even though the server saw a GET
//! and a SET. The figures by outcome divide each outcome's counters by that outcome's own count.
//!
//! Dataplane settings (durability, cache policy) appear by their names ([`by_name`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::driver::{OpCounts, PhaseResult};
use crate::info::{DinomoStats, Outcome, verb_kinds};
use crate::workload::Op;

/// The `schema` of a run report.
pub const RUN_SCHEMA: &str = "dinomo-bench/run/1";

/// The machine a run ran on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// The `model name` of /proc/cpuinfo.
    pub cpu_model: String,
    /// The logical processors of /proc/cpuinfo.
    pub cores: usize,
    /// The operating system and kernel release.
    pub os: String,
}

impl Machine {
    /// Reads /proc/cpuinfo and the kernel release; falls back to what the standard library knows.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let (cpu_model, processors) = parse_cpuinfo(&cpuinfo);
        let cores = if processors > 0 {
            processors
        } else {
            std::thread::available_parallelism().map_or(1, usize::from)
        };
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let os = match release.trim() {
            "" => std::env::consts::OS.to_owned(),
            release => format!("{} {release}", std::env::consts::OS),
        };
        Self {
            cpu_model: cpu_model.unwrap_or_else(|| "unknown cpu".to_owned()),
            cores,
            os,
        }
    }

    /// "cpu model, N cores", for the terminal.
    pub fn summary(&self) -> String {
        format!("{}, {} cores", self.cpu_model, self.cores)
    }
}

/// The first `model name` and the number of `processor` entries of a /proc/cpuinfo text.
pub fn parse_cpuinfo(text: &str) -> (Option<String>, usize) {
    let mut model = None;
    let mut processors = 0;
    for line in text.lines() {
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        match field.trim() {
            "processor" => processors += 1,
            "model name" if model.is_none() => model = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    (model, processors)
}

/// The current time in UTC as RFC 3339 (`2026-01-31T12:00:00Z`).
pub fn now_utc() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(seconds)
}

/// Formats seconds since the Unix epoch as RFC 3339 UTC.
pub fn format_utc(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Civil date from days since 1970-01-01, in 400-year eras of 146097 days that start on
    // March 1st, so the leap day is the last day of an era-year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proportions of the operation mix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Mix {
    pub read: f64,
    pub update: f64,
    pub insert: f64,
    pub read_modify_write: f64,
}

/// The settings that produced a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// `resp://HOST:PORT` or `embedded`.
    pub target: String,
    /// The YCSB workload letter, lower case.
    pub workload: String,
    pub mix: Mix,
    /// The key distribution's name, as `KeyDistribution` prints it.
    pub distribution: String,
    /// `hashed` or `ordered`.
    pub key_order: String,
    pub records: u64,
    /// The operations asked for, or `null` for a timed run.
    pub ops_requested: Option<u64>,
    /// The duration asked for, or `null` for a run by operation count.
    pub duration_requested_s: Option<f64>,
    pub threads: usize,
    pub pipeline: usize,
    pub value_bytes: usize,
    pub seed: u64,
    /// Whether the load phase ran.
    pub load_phase: bool,
    pub cache_policy: Option<String>,
    pub cache_bytes: Option<u64>,
    pub rtt_delay_ns: Option<u64>,
    pub cores: Option<usize>,
    pub durability: Option<String>,
    /// The command the bench started the server with, if it started one.
    pub server_cmd: Option<String>,
    /// What the server says it is (`redis_version 7.0.15`).
    pub server_version: Option<String>,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub mean: f64,
    pub max: f64,
}

impl Latency {
    /// The percentiles of a histogram in nanoseconds, or `None` if it is empty.
    pub fn from_histogram(ns: &Histogram<u64>) -> Option<Self> {
        if ns.is_empty() {
            return None;
        }
        let us = |value: u64| value as f64 / 1000.0;
        Some(Self {
            p50: us(ns.value_at_quantile(0.50)),
            p99: us(ns.value_at_quantile(0.99)),
            p999: us(ns.value_at_quantile(0.999)),
            mean: ns.mean() / 1000.0,
            max: us(ns.max()),
        })
    }
}

/// What the load phase did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    pub records: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub ops_per_sec: f64,
}

impl LoadReport {
    pub fn new(result: &PhaseResult) -> Self {
        Self {
            records: result.ops_total(),
            errors: result.errors_total(),
            elapsed_s: result.elapsed.as_secs_f64(),
            ops_per_sec: result.ops_per_sec(),
        }
    }
}

/// The read outcomes as fractions of all lookups.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HitRatio {
    pub value: f64,
    pub shortcut: f64,
    pub log: f64,
    pub miss: f64,
}

/// The cost of the requests of one outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeReport {
    /// Requests with this outcome.
    pub count: u64,
    /// Dependent round trips per such request, if the server counts them by outcome.
    pub round_trips_per_op: Option<f64>,
    /// Verbs per such request, by verb kind (only the kinds reported).
    pub verbs_per_op: BTreeMap<String, f64>,
    /// Bytes per such request, by verb kind (only the kinds reported).
    pub bytes_per_op: BTreeMap<String, f64>,
}

/// The dinomo-only figures of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DinomoFigures {
    pub round_trips_per_op: Option<f64>,
    pub verbs_per_op: Option<BTreeMap<String, f64>>,
    pub bytes_per_op: Option<BTreeMap<String, f64>>,
    pub hit_ratio: Option<HitRatio>,
    pub by_outcome: Option<BTreeMap<String, OutcomeReport>>,
}

impl DinomoFigures {
    /// Derives the figures from counter deltas over a run of `ops` operations.
    pub fn derive(delta: &DinomoStats, ops: u64) -> Self {
        let per = |value: u64, count: u64| (count > 0).then(|| value as f64 / count as f64);
        let by_kind = |prefix: &str, suffix: &str, count: u64| -> Option<BTreeMap<String, f64>> {
            let map: BTreeMap<String, f64> = verb_kinds()
                .filter_map(|kind| {
                    let value = delta.counter(&format!("{prefix}_{kind}{suffix}"))?;
                    Some((kind.to_owned(), per(value, count)?))
                })
                .collect();
            (!map.is_empty()).then_some(map)
        };
        let round_trips_per_op = delta.counter("round_trips").and_then(|rt| per(rt, ops));
        let reads: Vec<Option<u64>> = Outcome::READS
            .iter()
            .map(|o| delta.counter(o.count_field()))
            .collect();
        let hit_ratio = if reads.iter().any(Option::is_some) {
            let counts: Vec<u64> = reads.iter().map(|c| c.unwrap_or(0)).collect();
            let lookups: u64 = counts.iter().sum();
            (lookups > 0).then(|| {
                let ratio = |i: usize| counts[i] as f64 / lookups as f64;
                HitRatio {
                    value: ratio(0),
                    shortcut: ratio(1),
                    log: ratio(2),
                    miss: ratio(3),
                }
            })
        } else {
            None
        };
        let by_outcome: BTreeMap<String, OutcomeReport> = Outcome::ALL
            .iter()
            .filter_map(|&outcome| {
                let count = delta.counter(outcome.count_field())?;
                let suffix = format!("_{}", outcome.name());
                Some((
                    outcome.name().to_owned(),
                    OutcomeReport {
                        count,
                        round_trips_per_op: delta
                            .counter(&format!("round_trips{suffix}"))
                            .and_then(|rt| per(rt, count)),
                        verbs_per_op: by_kind("verbs", &suffix, count).unwrap_or_default(),
                        bytes_per_op: by_kind("bytes", &suffix, count).unwrap_or_default(),
                    },
                ))
            })
            .collect();
        Self {
            round_trips_per_op,
            verbs_per_op: by_kind("verbs", "", ops),
            bytes_per_op: by_kind("bytes", "", ops),
            hit_ratio,
            by_outcome: (!by_outcome.is_empty()).then_some(by_outcome),
        }
    }
}

/// One run: settings, machine, and results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// [`RUN_SCHEMA`].
    pub schema: String,
    #[serde(flatten)]
    pub settings: RunSettings,
    pub machine: Machine,
    /// When the run ended, RFC 3339 UTC.
    pub date: String,
    /// The load phase, or `null` when it was skipped.
    pub load: Option<LoadReport>,
    /// Operations answered in the run phase, failed ones included.
    pub ops: u64,
    pub ops_by_type: BTreeMap<String, u64>,
    /// Operations that got an error reply.
    pub errors: u64,
    pub errors_by_type: BTreeMap<String, u64>,
    /// The first distinct error texts.
    pub error_samples: Vec<String>,
    /// Reads answered with a null (no such key).
    pub nil_replies: u64,
    /// Requests sent; a read-modify-write sends two.
    pub requests: u64,
    pub elapsed_s: f64,
    /// Successful operations per second of the run phase.
    pub ops_per_sec: f64,
    /// Latency of successful operations; `null` if none succeeded.
    pub latency_us: Option<Latency>,
    pub latency_us_by_type: BTreeMap<String, Latency>,
    pub round_trips_per_op: Option<f64>,
    pub verbs_per_op: Option<BTreeMap<String, f64>>,
    pub bytes_per_op: Option<BTreeMap<String, f64>>,
    pub hit_ratio: Option<HitRatio>,
    pub by_outcome: Option<BTreeMap<String, OutcomeReport>>,
    /// Every dinomo counter's growth over the run phase.
    pub dinomo_counters: Option<BTreeMap<String, u64>>,
}

/// The report name of an operation.
pub fn op_name(op: Op) -> &'static str {
    match op {
        Op::Read => "read",
        Op::Update => "update",
        Op::Insert => "insert",
        Op::ReadModifyWrite => "read_modify_write",
    }
}

fn by_type(counts: &OpCounts) -> BTreeMap<String, u64> {
    Op::ALL
        .iter()
        .filter(|&&op| counts.get(op) > 0)
        .map(|&op| (op_name(op).to_owned(), counts.get(op)))
        .collect()
}

impl RunReport {
    /// Assembles a report from the phases' results and the dinomo counters' growth over the run.
    pub fn new(
        settings: RunSettings,
        machine: Machine,
        load: Option<&PhaseResult>,
        run: &PhaseResult,
        dinomo_delta: Option<&DinomoStats>,
    ) -> Self {
        let ops = run.ops_total();
        let figures = dinomo_delta
            .map(|delta| DinomoFigures::derive(delta, ops))
            .unwrap_or_default();
        let latency_us_by_type = Op::ALL
            .iter()
            .filter_map(|&op| {
                Latency::from_histogram(run.latency_of(op)).map(|l| (op_name(op).to_owned(), l))
            })
            .collect();
        Self {
            schema: RUN_SCHEMA.to_owned(),
            settings,
            machine,
            date: now_utc(),
            load: load.map(LoadReport::new),
            ops,
            ops_by_type: by_type(&run.ops),
            errors: run.errors_total(),
            errors_by_type: by_type(&run.errors),
            error_samples: run.error_samples.clone(),
            nil_replies: run.nil_replies,
            requests: run.requests,
            elapsed_s: run.elapsed.as_secs_f64(),
            ops_per_sec: run.ops_per_sec(),
            latency_us: Latency::from_histogram(&run.latency_ns),
            latency_us_by_type,
            round_trips_per_op: figures.round_trips_per_op,
            verbs_per_op: figures.verbs_per_op,
            bytes_per_op: figures.bytes_per_op,
            hit_ratio: figures.hit_ratio,
            by_outcome: figures.by_outcome,
            dinomo_counters: dinomo_delta.map(|delta| delta.counters.clone()),
        }
    }

    /// The report as a table for the terminal.
    pub fn to_table(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let mix = [
            ("read", s.mix.read),
            ("update", s.mix.update),
            ("insert", s.mix.insert),
            ("rmw", s.mix.read_modify_write),
        ]
        .iter()
        .filter(|(_, p)| *p > 0.0)
        .map(|(name, p)| format!("{name} {p}"))
        .collect::<Vec<_>>()
        .join(", ");
        let _ = writeln!(
            out,
            "workload {} ({mix}), {}, {} records of {} B, {} connections x {} in flight, seed {}",
            s.workload, s.distribution, s.records, s.value_bytes, s.threads, s.pipeline, s.seed
        );
        let _ = writeln!(
            out,
            "target   {}{}",
            s.target,
            s.server_version
                .as_ref()
                .map_or(String::new(), |v| format!(" ({v})"))
        );
        if let Some(cmd) = &s.server_cmd {
            let _ = writeln!(out, "server   {cmd}");
        }
        let _ = writeln!(out, "machine  {}; {}", self.machine.summary(), self.date);
        if let Some(load) = &self.load {
            let _ = writeln!(
                out,
                "load     {} records in {:.2} s, {:.0} ops/s, {} errors",
                load.records, load.elapsed_s, load.ops_per_sec, load.errors
            );
        }
        let _ = writeln!(out, "run      {} ops in {:.2} s", self.ops, self.elapsed_s);
        let _ = writeln!(out, "  throughput     {:.0} ops/s", self.ops_per_sec);
        match &self.latency_us {
            Some(l) => {
                let _ = writeln!(
                    out,
                    "  latency (us)   p50 {:.1}  p99 {:.1}  p99.9 {:.1}  mean {:.1}  max {:.1}",
                    l.p50, l.p99, l.p999, l.mean, l.max
                );
            }
            None => {
                let _ = writeln!(out, "  latency (us)   no operation succeeded");
            }
        }
        for (op, count) in &self.ops_by_type {
            let errors = self.errors_by_type.get(op).copied().unwrap_or(0);
            let latency = self.latency_us_by_type.get(op).map_or(String::new(), |l| {
                format!("  p50 {:.1}  p99 {:.1}", l.p50, l.p99)
            });
            let _ = writeln!(
                out,
                "  {op:<18} {count:>10} ops  {errors:>6} errors{latency}"
            );
        }
        let _ = writeln!(
            out,
            "  errors         {} (null replies {})",
            self.errors, self.nil_replies
        );
        for sample in &self.error_samples {
            let _ = writeln!(out, "    {sample}");
        }
        if self.dinomo_counters.is_none() {
            let _ = writeln!(
                out,
                "dinomo   no counters (the target has no `INFO dinomo` section)"
            );
            return out;
        }
        let fmt_map = |map: &BTreeMap<String, f64>| {
            map.iter()
                .map(|(k, v)| format!("{k} {v:.3}"))
                .collect::<Vec<_>>()
                .join("  ")
        };
        let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
        let _ = writeln!(
            out,
            "dinomo   round trips/op {}",
            opt(self.round_trips_per_op)
        );
        if let Some(verbs) = &self.verbs_per_op {
            let _ = writeln!(out, "  verbs/op       {}", fmt_map(verbs));
        }
        if let Some(bytes) = &self.bytes_per_op {
            let _ = writeln!(out, "  bytes/op       {}", fmt_map(bytes));
        }
        if let Some(h) = &self.hit_ratio {
            let _ = writeln!(
                out,
                "  hit ratio      value {:.3}  shortcut {:.3}  log {:.3}  miss {:.3}",
                h.value, h.shortcut, h.log, h.miss
            );
        }
        if let Some(outcomes) = &self.by_outcome {
            let _ = writeln!(out, "  outcome        count      rt/op  verbs/op");
            for (name, o) in outcomes {
                let _ = writeln!(
                    out,
                    "  {name:<10} {:>10} {:>10}  {}",
                    o.count,
                    opt(o.round_trips_per_op),
                    fmt_map(&o.verbs_per_op)
                );
            }
        }
        out
    }
}

/// A dataplane setting ([`Named`]: durability, cache policy) in a report as its name, read back
/// through the dataplane's own parser (`#[serde(with = "crate::report::by_name")]`).
pub mod by_name {
    use dinomo_dataplane::config::{Named, parse_name};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, T: Named>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Named>(
        deserializer: D,
    ) -> Result<T, D::Error> {
        parse_name(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::info::parse_info;

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(format_utc(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn cpuinfo() {
        let text = "processor\t: 0\nmodel name\t: Example CPU @ 2.0GHz\nflags\t: a b\n\nprocessor\t: 1\nmodel name\t: Example CPU @ 2.0GHz\n";
        assert_eq!(
            parse_cpuinfo(text),
            (Some("Example CPU @ 2.0GHz".to_owned()), 2)
        );
        assert_eq!(parse_cpuinfo(""), (None, 0));
        let machine = Machine::detect();
        assert!(machine.cores >= 1);
    }

    #[test]
    fn dinomo_figures_per_operation_and_outcome() {
        let text = "# dinomo\nround_trips:300\nverbs_read:250\nverbs_write:50\nbytes_read:25000\n\
                    hits_value:40\nhits_shortcut:30\nhits_log:10\nmisses:20\nwrites:100\n\
                    round_trips_value:0\nround_trips_shortcut:30\nround_trips_miss:40\n\
                    verbs_read_miss:40\nround_trips_write:100\nverbs_write_write:50\n";
        let stats = crate::info::DinomoStats::from_info(&parse_info(text).unwrap())
            .unwrap()
            .unwrap();
        let figures = DinomoFigures::derive(&stats, 200);
        assert_eq!(figures.round_trips_per_op, Some(1.5));
        let verbs = figures.verbs_per_op.unwrap();
        assert_eq!(verbs.get("read"), Some(&1.25));
        assert_eq!(verbs.get("write"), Some(&0.25));
        assert_eq!(verbs.get("cas"), None);
        assert_eq!(figures.bytes_per_op.unwrap().get("read"), Some(&125.0));
        let hits = figures.hit_ratio.unwrap();
        assert_eq!(
            (hits.value, hits.shortcut, hits.log, hits.miss),
            (0.4, 0.3, 0.1, 0.2)
        );
        let outcomes = figures.by_outcome.unwrap();
        assert_eq!(outcomes["miss"].count, 20);
        assert_eq!(outcomes["miss"].round_trips_per_op, Some(2.0));
        assert_eq!(outcomes["miss"].verbs_per_op.get("read"), Some(&2.0));
        assert_eq!(outcomes["shortcut"].round_trips_per_op, Some(1.0));
        assert_eq!(outcomes["log"].round_trips_per_op, None);
        assert_eq!(outcomes["write"].verbs_per_op.get("write"), Some(&0.5));
        // No operations: no per-operation figures.
        assert_eq!(DinomoFigures::derive(&stats, 0).round_trips_per_op, None);
        // No counters at all: nothing.
        assert_eq!(
            DinomoFigures::derive(&DinomoStats::default(), 10),
            DinomoFigures::default()
        );
    }

    #[test]
    fn latency_percentiles_are_ordered() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).unwrap();
        for v in 1..=10_000u64 {
            h.record(v * 100).unwrap();
        }
        let l = Latency::from_histogram(&h).unwrap();
        assert!(l.p50 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max);
        assert!((l.p50 - 500.0).abs() < 1.0, "{}", l.p50);
        let empty = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).unwrap();
        assert_eq!(Latency::from_histogram(&empty), None);
    }
}
