//! One benchmark run end to end: load phase, dinomo counters before, run phase, counters after,
//! and the report. The command line, the sweeps and `compare` all go through [`run_bench`].
//!
//! The progress bar (`indicatif`) is drawn on stderr, and only when the caller asks for it; the
//! binary asks only when stdout is a terminal, so piped and scripted runs print nothing but their
//! reports.

use std::time::{Duration, Instant};

use dinomo_dataplane::config::Named;
use indicatif::{ProgressBar, ProgressStyle};

use crate::BenchError;
use crate::driver::{self, Concurrency, PhaseResult, Stop};
use crate::report::{Machine, Mix, RunReport, RunSettings};
use crate::target::{ServerSettings, Target};
use crate::workload::{KeyOrder, Workload, WorkloadConfig, Ycsb};

/// Everything that shapes one run, apart from the target.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchPlan {
    pub ycsb: Ycsb,
    pub config: WorkloadConfig,
    pub concurrency: Concurrency,
    pub stop: Stop,
    /// Whether to run the load phase first.
    pub load: bool,
    /// Whether to draw progress bars.
    pub show_progress: bool,
}

impl BenchPlan {
    /// The plan's settings for a report.
    pub fn settings(&self, target: &dyn Target, server: &ServerSettings) -> RunSettings {
        let spec = &self.config.spec;
        RunSettings {
            target: target.label(),
            workload: self.ycsb.to_string(),
            mix: Mix {
                read: spec.read,
                update: spec.update,
                insert: spec.insert,
                read_modify_write: spec.rmw,
            },
            distribution: spec.distribution.to_string(),
            key_order: match self.config.key_order {
                KeyOrder::Hashed => "hashed",
                KeyOrder::Ordered => "ordered",
            }
            .to_owned(),
            records: self.config.records,
            ops_requested: match self.stop {
                Stop::Ops(ops) => Some(ops),
                Stop::Duration(_) => None,
            },
            duration_requested_s: match self.stop {
                Stop::Ops(_) => None,
                Stop::Duration(d) => Some(d.as_secs_f64()),
            },
            threads: self.concurrency.threads,
            pipeline: self.concurrency.pipeline,
            value_bytes: self.config.value_bytes,
            seed: self.config.seed,
            load_phase: self.load,
            cache_policy: server.cache_policy.map(|p| p.name().to_owned()),
            cache_bytes: server.cache_bytes,
            rtt_delay_ns: server
                .rtt_delay
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            cores: server.cores,
            durability: server.durability.map(|d| d.name().to_owned()),
            server_cmd: target.started_with(),
            server_version: target.server_version().ok().flatten(),
        }
    }
}

/// A progress bar for one phase, or nothing.
struct PhaseBar {
    bar: Option<ProgressBar>,
    started: Instant,
    timed: Option<Duration>,
}

impl PhaseBar {
    fn new(show: bool, label: &str, ops: Option<u64>, timed: Option<Duration>) -> Self {
        let bar = show.then(|| {
            let (length, template) = match (ops, timed) {
                (_, Some(duration)) => (
                    duration.as_millis() as u64,
                    "{prefix:>5} [{bar:40}] {elapsed_precise} {msg}",
                ),
                (ops, None) => (
                    ops.unwrap_or(0),
                    "{prefix:>5} [{bar:40}] {pos}/{len} ops, {per_sec}, eta {eta}",
                ),
            };
            let bar = ProgressBar::new(length);
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(label.to_owned());
            bar
        });
        Self {
            bar,
            started: Instant::now(),
            timed,
        }
    }

    fn update(&mut self, answered: u64) {
        if let Some(bar) = &self.bar {
            match self.timed {
                Some(_) => {
                    bar.set_position(self.started.elapsed().as_millis() as u64);
                    bar.set_message(format!("{answered} ops"));
                }
                None => bar.set_position(answered),
            }
        }
    }

    fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Runs the load phase of `plan` against `target`.
pub fn run_load(target: &dyn Target, plan: &BenchPlan) -> Result<PhaseResult, BenchError> {
    let workload = Workload::new(plan.config)?;
    let mut bar = PhaseBar::new(plan.show_progress, "load", Some(plan.config.records), None);
    let result = driver::load(
        target,
        &workload,
        plan.concurrency,
        Some(&mut |n| bar.update(n)),
    );
    bar.finish();
    Ok(result?)
}

/// Runs `plan` against `target` and reports it. `server` names the settings the target was started
/// with, for the report.
pub fn run_bench(
    target: &dyn Target,
    plan: &BenchPlan,
    server: &ServerSettings,
) -> Result<RunReport, BenchError> {
    let workload = Workload::new(plan.config)?;
    let load = if plan.load {
        Some(run_load(target, plan)?)
    } else {
        None
    };
    let before = target.stats()?;
    let (ops, timed) = match plan.stop {
        Stop::Ops(ops) => (Some(ops), None),
        Stop::Duration(duration) => (None, Some(duration)),
    };
    let mut bar = PhaseBar::new(plan.show_progress, "run", ops, timed);
    let run = driver::run(
        target,
        &workload,
        plan.concurrency,
        plan.stop,
        Some(&mut |n| bar.update(n)),
    );
    bar.finish();
    let run = run?;
    let after = target.stats()?;
    let delta = match (&before, &after) {
        (Some(before), Some(after)) => Some(after.since(before)),
        (None, Some(after)) => Some(after.clone()),
        (_, None) => None,
    };
    Ok(RunReport::new(
        plan.settings(target, server),
        Machine::detect(),
        load.as_ref(),
        &run,
        delta.as_ref(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::fake::FakeTarget;
    use crate::workload::WorkloadSpec;

    #[test]
    fn a_report_from_a_fake_target() {
        let target = FakeTarget::default();
        let plan = BenchPlan {
            ycsb: Ycsb::B,
            config: WorkloadConfig {
                value_bytes: 32,
                ..WorkloadConfig::new(400, WorkloadSpec::ycsb(Ycsb::B).unwrap())
            },
            concurrency: Concurrency {
                threads: 2,
                pipeline: 3,
            },
            stop: Stop::Ops(1500),
            load: true,
            show_progress: false,
        };
        let report = run_bench(&target, &plan, &ServerSettings::default()).unwrap();
        assert_eq!(report.ops, 1500);
        assert_eq!(report.load.as_ref().unwrap().records, 400);
        assert_eq!(report.settings.workload, "b");
        assert_eq!(report.settings.ops_requested, Some(1500));
        assert_eq!(report.nil_replies, 0);
        assert!(report.round_trips_per_op.is_none() && report.dinomo_counters.is_none());
        let json = serde_json::to_string(&report).unwrap();
        let back: RunReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        for key in [
            "ops_per_sec",
            "latency_us",
            "round_trips_per_op",
            "verbs_per_op",
            "hit_ratio",
            "workload",
            "distribution",
            "records",
            "threads",
            "pipeline",
            "value_bytes",
            "seed",
            "target",
            "machine",
            "date",
        ] {
            assert!(value.get(key).is_some(), "{key} missing");
        }
        assert!(report.to_table().contains("no counters"));
    }
}
