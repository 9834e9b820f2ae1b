//! Sweeps: many runs, each against a freshly started server with one setting changed, written as
//! one JSON document (schema [`SWEEP_SCHEMA`]) with every point, and drawn as one SVG.
//!
//! - `cache`: cache budget from 1% to 100% of the dataset for the policies dac, value and shortcut,
//!   plus `none` (run once per workload and distribution, budget 0), for workloads A, B, C under
//!   an exact Zipf 0.99 and uniform keys. Plotted: round trips per operation, and throughput
//!   relative to `none`.
//! - `rtt`: injected fabric round-trip delay (0, 1.6 µs, 5 µs). Plotted: throughput relative to no
//!   delay, and round trips per operation.
//! - `cores`: worker cores 1..N. Plotted: throughput and p99 latency relative to one core.
//!
//! Every point starts its own server through a [`Launcher`] (a `--server-cmd` template, or the
//! embedded target's hook), loads the records, runs, reads dinomo's counters and stops the server,
//! so no point inherits a warm cache from another. Ratios are taken against the baseline point of
//! the same workload and distribution, measured in the same sweep: on a shared machine only such
//! ratios (and counts like round trips) mean anything.

use std::collections::BTreeMap;
use std::path::Path;

use dinomo_dataplane::cache::Policy;
use dinomo_dataplane::config::Named;
use serde::{Deserialize, Serialize};

use crate::BenchError;
use crate::bench::{BenchPlan, run_bench};
use crate::cli::{CacheSweepArgs, CoresSweepArgs, POINT_OPS_DEFAULT, RttSweepArgs, SweepCommon};
use crate::constants::SWEEP_POINTS_MAX;
use crate::plot::{Panel, Series, draw_svg};
use crate::report::{HitRatio, Machine, RunReport, now_utc};
use crate::server::{CommandTemplate, TemplateLauncher};
use crate::target::{EmbeddedLauncher, Launcher, ServerSettings, TargetSpec};
use crate::units::format_bytes;
use crate::workload::{KeyOrder, key_name};

/// The `schema` of a sweep document.
pub const SWEEP_SCHEMA: &str = "dinomo-bench/sweep/1";

/// What a sweep varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SweepKind {
    Cache,
    Rtt,
    Cores,
}

impl SweepKind {
    pub fn name(self) -> &'static str {
        match self {
            SweepKind::Cache => "cache",
            SweepKind::Rtt => "rtt",
            SweepKind::Cores => "cores",
        }
    }

    /// The sentence a report gives for its ratios' baseline.
    fn baseline(self) -> &'static str {
        match self {
            SweepKind::Cache => {
                "policy none (no cache) with the same workload and distribution, same sweep"
            }
            SweepKind::Rtt => {
                "no injected delay with the same workload and distribution, same sweep"
            }
            SweepKind::Cores => {
                "the fewest cores swept (1) with the same workload and distribution, same sweep"
            }
        }
    }
}

/// One point to run.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPoint {
    pub plan: BenchPlan,
    pub settings: ServerSettings,
    /// The cache budget in percent of the dataset, for `cache` sweeps (`None` for `none`).
    pub budget_percent: Option<f64>,
}

/// Every point of a sweep, in the order they run.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPlan {
    pub kind: SweepKind,
    pub points: Vec<SweepPoint>,
    /// Key and value bytes of the loaded records.
    pub dataset_bytes: u64,
}

/// One point's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPointReport {
    pub workload: String,
    pub distribution: String,
    pub cache_policy: Option<String>,
    pub budget_percent: Option<f64>,
    pub cache_bytes: Option<u64>,
    pub rtt_delay_ns: Option<u64>,
    pub cores: Option<usize>,
    pub ops_per_sec: f64,
    pub latency_p99_us: Option<f64>,
    pub round_trips_per_op: Option<f64>,
    pub hit_ratio: Option<HitRatio>,
    /// ops_per_sec over the baseline point's.
    pub throughput_ratio: Option<f64>,
    /// p99 latency over the baseline point's.
    pub p99_ratio: Option<f64>,
    /// The whole run report of the point.
    pub report: RunReport,
}

/// A whole sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    pub schema: String,
    pub sweep: SweepKind,
    pub date: String,
    pub machine: Machine,
    /// How each point's server was started.
    pub launcher: String,
    pub dataset_bytes: u64,
    /// What the ratios are taken against.
    pub baseline: String,
    pub points: Vec<SweepPointReport>,
}

/// Key plus value bytes of the first `records` records.
pub fn dataset_bytes(records: u64, key_order: KeyOrder, value_bytes: usize) -> u64 {
    (0..records)
        .map(|i| key_name(i, key_order).len() as u64 + value_bytes as u64)
        .sum()
}

/// The launcher a sweep's `--target` and `--server-cmd` ask for.
pub fn sweep_launcher(common: &SweepCommon) -> Result<Box<dyn Launcher>, BenchError> {
    match (&common.target, &common.server.server_cmd) {
        (Some(TargetSpec::Embedded), None) => Ok(Box::new(EmbeddedLauncher)),
        (None, Some(cmd)) => Ok(Box::new(TemplateLauncher {
            template: CommandTemplate::parse(cmd)?,
            timeout: common.server.server_timeout,
        })),
        (Some(TargetSpec::Resp { .. }), None) => Err(BenchError::Invalid(
            "a sweep starts a fresh server per point, so it cannot use a running resp:// server: \
             give --server-cmd with a command template instead"
                .to_owned(),
        )),
        (Some(_), Some(_)) => Err(BenchError::Invalid(
            "give either --target embedded or --server-cmd, not both".to_owned(),
        )),
        (None, None) => Err(BenchError::Invalid(
            "a sweep needs --server-cmd (a command template that starts one server per point) \
             or --target embedded"
                .to_owned(),
        )),
    }
}

fn reject_swept(given: bool, option: &str, sweep: &str, instead: &str) -> Result<(), BenchError> {
    if given {
        return Err(BenchError::Invalid(format!(
            "{option} is what `sweep {sweep}` varies; give the values with {instead}"
        )));
    }
    Ok(())
}

fn check_points(points: &[SweepPoint]) -> Result<(), BenchError> {
    if points.is_empty() {
        return Err(BenchError::Invalid("the sweep has no points".to_owned()));
    }
    if points.len() > SWEEP_POINTS_MAX {
        return Err(BenchError::Invalid(format!(
            "the sweep has {} points, more than {SWEEP_POINTS_MAX}",
            points.len()
        )));
    }
    Ok(())
}

/// The points of `sweep cache`.
pub fn plan_cache(args: &CacheSweepArgs, show_progress: bool) -> Result<SweepPlan, BenchError> {
    let common = &args.common;
    reject_swept(
        common.server.cache_policy.is_some(),
        "--cache-policy",
        "cache",
        "--policies",
    )?;
    reject_swept(
        common.server.cache_bytes.is_some(),
        "--cache-bytes",
        "cache",
        "--budgets",
    )?;
    for &budget in &args.budgets {
        if !(budget > 0.0 && budget <= 100.0) {
            return Err(BenchError::Invalid(format!(
                "cache budget {budget}% is outside (0, 100]"
            )));
        }
    }
    let base = common.server.settings();
    let mut points = Vec::new();
    let mut dataset = None;
    for &distribution in &args.distributions {
        for &ycsb in &common.workloads {
            let plan =
                common
                    .size
                    .plan(ycsb, Some(distribution), POINT_OPS_DEFAULT, show_progress)?;
            let bytes = *dataset.get_or_insert_with(|| {
                dataset_bytes(
                    plan.config.records,
                    plan.config.key_order,
                    plan.config.value_bytes,
                )
            });
            points.push(SweepPoint {
                plan: plan.clone(),
                settings: ServerSettings {
                    cache_policy: Some(Policy::None),
                    cache_bytes: Some(0),
                    ..base.clone()
                },
                budget_percent: None,
            });
            for &policy in args.policies.iter().filter(|&&p| p != Policy::None) {
                for &budget in &args.budgets {
                    points.push(SweepPoint {
                        plan: plan.clone(),
                        settings: ServerSettings {
                            cache_policy: Some(policy),
                            cache_bytes: Some((bytes as f64 * budget / 100.0).round() as u64),
                            ..base.clone()
                        },
                        budget_percent: Some(budget),
                    });
                }
            }
        }
    }
    check_points(&points)?;
    Ok(SweepPlan {
        kind: SweepKind::Cache,
        points,
        dataset_bytes: dataset.unwrap_or(0),
    })
}

/// The points of `sweep rtt`.
pub fn plan_rtt(args: &RttSweepArgs, show_progress: bool) -> Result<SweepPlan, BenchError> {
    let common = &args.common;
    reject_swept(
        common.server.rtt_delay.is_some(),
        "--rtt-delay",
        "rtt",
        "--delays",
    )?;
    let mut delays = args.delays.clone();
    if !delays.contains(&std::time::Duration::ZERO) {
        delays.insert(0, std::time::Duration::ZERO);
    }
    let base = common.server.settings();
    let mut points = Vec::new();
    for &ycsb in &common.workloads {
        let plan = common.size.plan(
            ycsb,
            args.distribution.distribution(),
            POINT_OPS_DEFAULT,
            show_progress,
        )?;
        for &delay in &delays {
            points.push(SweepPoint {
                plan: plan.clone(),
                settings: ServerSettings {
                    rtt_delay: Some(delay),
                    ..base.clone()
                },
                budget_percent: None,
            });
        }
    }
    check_points(&points)?;
    let first = &points[0].plan.config;
    Ok(SweepPlan {
        kind: SweepKind::Rtt,
        dataset_bytes: dataset_bytes(first.records, first.key_order, first.value_bytes),
        points,
    })
}

/// The points of `sweep cores`.
pub fn plan_cores(args: &CoresSweepArgs, show_progress: bool) -> Result<SweepPlan, BenchError> {
    let common = &args.common;
    reject_swept(
        common.server.cores.is_some(),
        "--cores",
        "cores",
        "--core-counts",
    )?;
    let mut counts = args.core_counts.clone();
    if counts.is_empty() {
        counts = (1..=Machine::detect().cores).collect();
    }
    if counts.contains(&0) {
        return Err(BenchError::Invalid(
            "a core count must be at least 1".to_owned(),
        ));
    }
    if !counts.contains(&1) {
        counts.insert(0, 1);
    }
    let base = common.server.settings();
    let mut points = Vec::new();
    for &ycsb in &common.workloads {
        let plan = common.size.plan(
            ycsb,
            args.distribution.distribution(),
            POINT_OPS_DEFAULT,
            show_progress,
        )?;
        for &cores in &counts {
            points.push(SweepPoint {
                plan: plan.clone(),
                settings: ServerSettings {
                    cores: Some(cores),
                    ..base.clone()
                },
                budget_percent: None,
            });
        }
    }
    check_points(&points)?;
    let first = &points[0].plan.config;
    Ok(SweepPlan {
        kind: SweepKind::Cores,
        dataset_bytes: dataset_bytes(first.records, first.key_order, first.value_bytes),
        points,
    })
}

/// A short description of a point, for progress lines and tables.
fn describe(kind: SweepKind, point: &SweepPointReport) -> String {
    let setting = match kind {
        SweepKind::Cache => match point.budget_percent {
            Some(percent) => format!(
                "{} at {percent}% ({})",
                point.cache_policy.as_deref().unwrap_or("?"),
                format_bytes(point.cache_bytes.unwrap_or(0))
            ),
            None => "none".to_owned(),
        },
        SweepKind::Rtt => format!("rtt {} ns", point.rtt_delay_ns.unwrap_or(0)),
        SweepKind::Cores => format!("{} cores", point.cores.unwrap_or(0)),
    };
    format!(
        "workload {} {} {setting}",
        point.workload, point.distribution
    )
}

impl SweepPointReport {
    /// The point's entry, from the report of its run.
    pub fn new(point: &SweepPoint, report: RunReport) -> Self {
        let settings = &point.settings;
        Self {
            workload: point.plan.ycsb.to_string(),
            distribution: point.plan.config.spec.distribution.to_string(),
            cache_policy: settings.cache_policy.map(|p| p.name().to_owned()),
            budget_percent: point.budget_percent,
            cache_bytes: settings.cache_bytes,
            rtt_delay_ns: settings
                .rtt_delay
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            cores: settings.cores,
            ops_per_sec: report.ops_per_sec,
            latency_p99_us: report.latency_us.map(|l| l.p99),
            round_trips_per_op: report.round_trips_per_op,
            hit_ratio: report.hit_ratio,
            throughput_ratio: None,
            p99_ratio: None,
            report,
        }
    }
}

/// Runs every point of `plan`, starting each server with `launcher`, and reports them with their
/// ratios to the baseline. `log` gets one line per point as it starts.
pub fn run_sweep(
    plan: &SweepPlan,
    launcher: &dyn Launcher,
    log: &mut dyn FnMut(&str),
) -> Result<SweepReport, BenchError> {
    let total = plan.points.len();
    let mut points = Vec::with_capacity(total);
    for (i, point) in plan.points.iter().enumerate() {
        let s = &point.settings;
        let setting = match plan.kind {
            SweepKind::Cache => format!(
                "policy {} budget {}",
                s.cache_policy.map_or("-", |p| p.name()),
                format_bytes(s.cache_bytes.unwrap_or(0))
            ),
            SweepKind::Rtt => format!(
                "rtt {}",
                crate::units::format_duration_exact(s.rtt_delay.unwrap_or_default())
            ),
            SweepKind::Cores => format!("{} cores", s.cores.unwrap_or(0)),
        };
        log(&format!(
            "[{}/{total}] workload {} {} {setting}",
            i + 1,
            point.plan.ycsb,
            point.plan.config.spec.distribution
        ));
        let target = launcher.launch(&point.settings)?;
        let report = run_bench(target.as_ref(), &point.plan, &point.settings)?;
        drop(target);
        points.push(SweepPointReport::new(point, report));
    }
    fill_ratios(plan.kind, &mut points);
    Ok(SweepReport {
        schema: SWEEP_SCHEMA.to_owned(),
        sweep: plan.kind,
        date: now_utc(),
        machine: Machine::detect(),
        launcher: launcher.label(),
        dataset_bytes: plan.dataset_bytes,
        baseline: plan.kind.baseline().to_owned(),
        points,
    })
}

/// Whether `point` is the baseline of its group.
fn is_baseline(kind: SweepKind, point: &SweepPointReport, fewest_cores: usize) -> bool {
    match kind {
        SweepKind::Cache => point.cache_policy.as_deref() == Some(Policy::None.name()),
        SweepKind::Rtt => point.rtt_delay_ns == Some(0),
        SweepKind::Cores => point.cores == Some(fewest_cores),
    }
}

/// Sets every point's ratios against the baseline of its workload and distribution.
pub fn fill_ratios(kind: SweepKind, points: &mut [SweepPointReport]) {
    let fewest_cores = points.iter().filter_map(|p| p.cores).min().unwrap_or(1);
    let mut baselines: BTreeMap<(String, String), (f64, Option<f64>)> = BTreeMap::new();
    for point in points.iter() {
        if is_baseline(kind, point, fewest_cores) {
            baselines
                .entry((point.workload.clone(), point.distribution.clone()))
                .or_insert((point.ops_per_sec, point.latency_p99_us));
        }
    }
    for point in points.iter_mut() {
        let Some(&(ops, p99)) =
            baselines.get(&(point.workload.clone(), point.distribution.clone()))
        else {
            continue;
        };
        point.throughput_ratio = (ops > 0.0).then(|| point.ops_per_sec / ops);
        point.p99_ratio = match (point.latency_p99_us, p99) {
            (Some(mine), Some(base)) if base > 0.0 => Some(mine / base),
            _ => None,
        };
    }
}

/// The sweep as a table for the terminal.
pub fn to_table(report: &SweepReport) -> String {
    let mut out = format!(
        "sweep {} on {}; {}\nratios against {}\n",
        report.sweep.name(),
        report.machine.summary(),
        report.date,
        report.baseline
    );
    out.push_str(&format!(
        "{:<58} {:>10} {:>10} {:>10}\n",
        "point", "thr ratio", "p99 ratio", "rt/op"
    ));
    let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
    for point in &report.points {
        out.push_str(&format!(
            "{:<58} {:>10} {:>10} {:>10}\n",
            describe(report.sweep, point),
            opt(point.throughput_ratio),
            opt(point.p99_ratio),
            opt(point.round_trips_per_op)
        ));
    }
    out
}

/// Reads one figure of a point, if the point has it.
type Metric<'a> = &'a dyn Fn(&SweepPointReport) -> Option<f64>;

/// Draws the sweep's figure into the SVG file `path`.
pub fn plot(report: &SweepReport, path: &Path) -> Result<(), BenchError> {
    let no_counters = "no round-trip counts: the target reported no dinomo counters".to_owned();
    let mut groups: Vec<(String, String)> = Vec::new();
    for point in &report.points {
        let key = (point.workload.clone(), point.distribution.clone());
        if !groups.contains(&key) {
            groups.push(key);
        }
    }
    let in_group = |(workload, distribution): &(String, String)| -> Vec<&SweepPointReport> {
        report
            .points
            .iter()
            .filter(|p| &p.workload == workload && &p.distribution == distribution)
            .collect()
    };
    let series_of = |points: Vec<&SweepPointReport>, x: Metric<'_>, y: Metric<'_>| {
        let mut line: Vec<(f64, f64)> =
            points.iter().filter_map(|p| Some((x(p)?, y(p)?))).collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        line
    };
    let (panels, columns, title) = match report.sweep {
        SweepKind::Cache => {
            let budgets: Vec<f64> = report
                .points
                .iter()
                .filter_map(|p| p.budget_percent)
                .collect();
            let (lo, hi) = budgets
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &b| {
                    (lo.min(b), hi.max(b))
                });
            let mut panels = Vec::new();
            for group in &groups {
                let name = format!("workload {}, {}", group.0, group.1);
                let points: Vec<&SweepPointReport> = in_group(group);
                let mut rt = Vec::new();
                let mut thr = Vec::new();
                for &policy in Policy::ALL {
                    let of_policy: Vec<&SweepPointReport> = points
                        .iter()
                        .copied()
                        .filter(|p| p.cache_policy.as_deref() == Some(policy.name()))
                        .collect();
                    if of_policy.is_empty() {
                        continue;
                    }
                    let baseline = policy == Policy::None;
                    // The baseline has no budget: draw it flat across the swept budgets.
                    let x: Metric<'_> = &|p| p.budget_percent;
                    let flat = |value: Option<f64>| -> Vec<(f64, f64)> {
                        match value {
                            Some(v) if lo.is_finite() => vec![(lo, v), (hi, v)],
                            _ => vec![],
                        }
                    };
                    let (rt_line, thr_line) = if baseline {
                        (
                            flat(of_policy[0].round_trips_per_op),
                            flat(of_policy[0].throughput_ratio),
                        )
                    } else {
                        (
                            series_of(of_policy.clone(), x, &|p| p.round_trips_per_op),
                            series_of(of_policy.clone(), x, &|p| p.throughput_ratio),
                        )
                    };
                    let label = if baseline {
                        "none (baseline)".to_owned()
                    } else {
                        policy.name().to_owned()
                    };
                    rt.push(Series {
                        name: label.clone(),
                        points: rt_line,
                        dashed: baseline,
                    });
                    thr.push(Series {
                        name: label,
                        points: thr_line,
                        dashed: baseline,
                    });
                }
                panels.push(Panel {
                    title: format!("round trips per op: {name}"),
                    x_label: "cache budget (% of dataset)".into(),
                    y_label: "KN-MN round trips per op".into(),
                    x_log: true,
                    series: rt,
                    empty_note: no_counters.clone(),
                });
                panels.push(Panel {
                    title: format!("throughput vs no cache: {name}"),
                    x_label: "cache budget (% of dataset)".into(),
                    y_label: "ops/s ratio to policy none".into(),
                    x_log: true,
                    series: thr,
                    empty_note: "no throughput ratios".into(),
                });
            }
            (panels, 2, "cache budget sweep")
        }
        SweepKind::Rtt | SweepKind::Cores => {
            let (x, x_label): (Metric<'_>, &str) = match report.sweep {
                SweepKind::Rtt => (
                    &|p| p.rtt_delay_ns.map(|ns| ns as f64 / 1000.0),
                    "injected round-trip delay (us)",
                ),
                _ => (&|p| p.cores.map(|c| c as f64), "worker cores"),
            };
            let mut thr = Vec::new();
            let mut second = Vec::new();
            for group in &groups {
                let name = format!("{} {}", group.0, group.1);
                let points: Vec<&SweepPointReport> = in_group(group);
                thr.push(Series {
                    name: name.clone(),
                    points: series_of(points.clone(), x, &|p| p.throughput_ratio),
                    dashed: false,
                });
                let y: Metric<'_> = match report.sweep {
                    SweepKind::Rtt => &|p| p.round_trips_per_op,
                    _ => &|p| p.p99_ratio,
                };
                second.push(Series {
                    name,
                    points: series_of(points, x, y),
                    dashed: false,
                });
            }
            let (baseline, second_title, second_y, note) = match report.sweep {
                SweepKind::Rtt => (
                    "no delay",
                    "round trips per op",
                    "KN-MN round trips per op",
                    no_counters.clone(),
                ),
                _ => (
                    "1 core",
                    "p99 latency vs 1 core",
                    "p99 ratio to 1 core",
                    "no latency ratios".to_owned(),
                ),
            };
            let panels = vec![
                Panel {
                    title: format!("throughput vs {baseline}"),
                    x_label: x_label.into(),
                    y_label: format!("ops/s ratio to {baseline}"),
                    x_log: false,
                    series: thr,
                    empty_note: "no throughput ratios".into(),
                },
                Panel {
                    title: second_title.into(),
                    x_label: x_label.into(),
                    y_label: second_y.into(),
                    x_log: false,
                    series: second,
                    empty_note: note,
                },
            ];
            let title = if report.sweep == SweepKind::Rtt {
                "round-trip delay sweep"
            } else {
                "worker cores sweep"
            };
            (panels, 2, title)
        }
    };
    let title = format!(
        "dinomo {title} ({}; {})",
        report.machine.summary(),
        report.date
    );
    draw_svg(path, &title, &panels, columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(
        workload: &str,
        policy: Option<&str>,
        budget: Option<f64>,
        ops: f64,
        p99: f64,
    ) -> SweepPointReport {
        SweepPointReport {
            workload: workload.into(),
            distribution: "uniform".into(),
            cache_policy: policy.map(str::to_owned),
            budget_percent: budget,
            cache_bytes: budget.map(|b| b as u64),
            rtt_delay_ns: None,
            cores: None,
            ops_per_sec: ops,
            latency_p99_us: Some(p99),
            round_trips_per_op: Some(2.0 - budget.unwrap_or(0.0) / 100.0),
            hit_ratio: None,
            throughput_ratio: None,
            p99_ratio: None,
            report: sample_report(),
        }
    }

    /// A real report of a tiny run against the in-process fake target.
    fn sample_report() -> RunReport {
        use crate::driver::fake::FakeTarget;
        use crate::driver::{Concurrency, Stop};
        use crate::workload::{WorkloadConfig, WorkloadSpec, Ycsb};
        let plan = BenchPlan {
            ycsb: Ycsb::C,
            config: WorkloadConfig::new(10, WorkloadSpec::ycsb(Ycsb::C).unwrap()),
            concurrency: Concurrency {
                threads: 1,
                pipeline: 1,
            },
            stop: Stop::Ops(10),
            load: true,
            show_progress: false,
        };
        run_bench(&FakeTarget::default(), &plan, &ServerSettings::default()).unwrap()
    }

    #[test]
    fn ratios_are_against_the_baseline_of_the_same_group() {
        let mut points = vec![
            point("a", Some("none"), None, 100.0, 10.0),
            point("a", Some("dac"), Some(10.0), 150.0, 5.0),
            point("c", Some("none"), None, 200.0, 4.0),
            point("c", Some("dac"), Some(10.0), 100.0, 8.0),
        ];
        fill_ratios(SweepKind::Cache, &mut points);
        assert_eq!(points[0].throughput_ratio, Some(1.0));
        assert_eq!(points[1].throughput_ratio, Some(1.5));
        assert_eq!(points[1].p99_ratio, Some(0.5));
        assert_eq!(points[3].throughput_ratio, Some(0.5));
        assert_eq!(points[3].p99_ratio, Some(2.0));
    }

    #[test]
    fn dataset_bytes_counts_keys_and_values() {
        // user0 .. user9 are 5 bytes, user10 .. user11 are 6.
        assert_eq!(
            dataset_bytes(12, KeyOrder::Ordered, 100),
            10 * 5 + 2 * 6 + 1200
        );
    }

    #[test]
    fn cache_plot_draws() {
        let mut points = vec![
            point("a", Some("none"), None, 100.0, 10.0),
            point("a", Some("dac"), Some(1.0), 120.0, 9.0),
            point("a", Some("dac"), Some(100.0), 150.0, 5.0),
            point("a", Some("value"), Some(1.0), 110.0, 9.0),
        ];
        fill_ratios(SweepKind::Cache, &mut points);
        let report = SweepReport {
            schema: SWEEP_SCHEMA.into(),
            sweep: SweepKind::Cache,
            date: now_utc(),
            machine: Machine::detect(),
            launcher: "test".into(),
            dataset_bytes: 1000,
            baseline: SweepKind::Cache.baseline().into(),
            points,
        };
        let dir = crate::server::fresh_dir("sweep-plot").unwrap();
        let path = dir.join("cache.svg");
        plot(&report, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("none (baseline)") && svg.contains("value"));
        assert!(to_table(&report).contains("dac at 100%"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
