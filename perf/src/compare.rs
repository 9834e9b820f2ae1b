//! `compare`: dinomo side by side with Redis, measured alternately in one run.
//!
//! The bench starts Debian's `redis-server` on a free loopback port with settings matched to the
//! durability asked for (no RDB snapshots in either case; `memory` is `appendonly no`, `flush` is
//! `appendonly yes` with `appendfsync always`), and dinomo from its `--server-cmd` template (with
//! `{durability}` set to the same durability). It loads the same records into both, then for each
//! workload runs `rounds` rounds of Redis then dinomo (A B A B ...), so that drift in the machine's
//! speed (other tenants, thermal limits) hits both sides alike. For each round it takes the
//! dinomo/redis ratio of throughput and of p99 latency, and it reports the median and the range of
//! those per-round ratios. Absolute figures are kept in the JSON but are not the result: on a
//! shared machine only the ratios mean anything.
//!
//! The "dinomo" side can be any RESP server: the tests run Redis against Redis, where every ratio
//! should come out near 1.

use dinomo_dataplane::config::Durability;
use serde::{Deserialize, Serialize};

use crate::BenchError;
use crate::bench::{BenchPlan, run_bench, run_load};
use crate::cli::{CompareArgs, POINT_OPS_DEFAULT};
use crate::constants::COMPARE_ROUNDS_MAX;
use crate::report::{Machine, RunReport, now_utc};
use crate::server::{CommandTemplate, Placeholder, SpawnedTarget, TemplateLauncher};
use crate::target::{ServerSettings, Target};
use crate::workload::Ycsb;

/// The `schema` of a compare document.
pub const COMPARE_SCHEMA: &str = "dinomo-bench/compare/1";

/// One side of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// The command the bench started the server with.
    pub command: String,
    /// What the server says it is.
    pub version: Option<String>,
    /// When the server acknowledges a write, in a sentence.
    pub durability: String,
}

/// The median and range of per-round ratios.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RatioSummary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl RatioSummary {
    /// Summarises `ratios`, or `None` if there are none.
    pub fn of(ratios: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = ratios.iter().copied().filter(|r| r.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        })
    }
}

/// One measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareRun {
    pub round: usize,
    /// `redis` or `dinomo`.
    pub side: String,
    pub report: RunReport,
}

/// One workload's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareWorkload {
    pub workload: String,
    pub distribution: String,
    /// dinomo ops/s over Redis ops/s, per round.
    pub throughput_ratios: Vec<f64>,
    /// dinomo p99 over Redis p99, per round.
    pub p99_ratios: Vec<f64>,
    pub throughput_ratio: Option<RatioSummary>,
    pub p99_ratio: Option<RatioSummary>,
    /// Every run in the order it ran: redis, dinomo, redis, dinomo, ...
    pub runs: Vec<CompareRun>,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    pub schema: String,
    pub date: String,
    pub machine: Machine,
    #[serde(with = "crate::report::by_name")]
    pub durability: Durability,
    pub rounds: usize,
    pub redis: Side,
    pub dinomo: Side,
    pub records: u64,
    pub value_bytes: usize,
    pub threads: usize,
    pub pipeline: usize,
    pub seed: u64,
    pub workloads: Vec<CompareWorkload>,
}

/// The `redis-server` command with settings matched to `durability`.
pub fn redis_template(
    program: &str,
    durability: Durability,
) -> Result<CommandTemplate, BenchError> {
    let mut words = vec![
        program,
        "--port",
        "{port}",
        "--bind",
        "127.0.0.1",
        "--dir",
        "{dir}",
        "--save",
        "",
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
        "--logfile",
        "",
    ];
    match durability {
        Durability::Memory => words.extend(["--appendonly", "no"]),
        Durability::Flush => words.extend(["--appendonly", "yes", "--appendfsync", "always"]),
    }
    Ok(CommandTemplate::from_words(&words)?)
}

fn redis_durability(durability: Durability) -> String {
    match durability {
        Durability::Memory => {
            "memory: appendonly no and no RDB snapshots (save \"\"); a crash loses every write"
                .to_owned()
        }
        Durability::Flush => {
            "flush: appendonly yes, appendfsync always (fsync before every reply), no RDB snapshots"
                .to_owned()
        }
    }
}

/// Runs the comparison that `args` describes. `log` gets a line as each run starts.
pub fn run_compare(
    args: &CompareArgs,
    show_progress: bool,
    log: &mut dyn FnMut(&str),
) -> Result<CompareReport, BenchError> {
    let Some(dinomo_cmd) = &args.server.server_cmd else {
        return Err(BenchError::Invalid(
            "compare needs --server-cmd, the command template that starts the dinomo server \
             (for example 'dinomo serve --port {port} --dir {dir}')"
                .to_owned(),
        ));
    };
    if !(1..=COMPARE_ROUNDS_MAX).contains(&args.rounds) {
        return Err(BenchError::Invalid(format!(
            "--rounds {} is outside 1..={COMPARE_ROUNDS_MAX}",
            args.rounds
        )));
    }
    if args.workloads.is_empty() {
        return Err(BenchError::Invalid(
            "compare needs at least one workload".to_owned(),
        ));
    }
    let durability = args.server.durability.unwrap_or(Durability::Memory);
    let timeout = args.server.server_timeout;
    let distribution = args.distribution.distribution();
    let plans: Vec<(Ycsb, BenchPlan)> = args
        .workloads
        .iter()
        .map(|&ycsb| {
            let mut plan = args
                .size
                .plan(ycsb, distribution, POINT_OPS_DEFAULT, show_progress)?;
            // Both servers are loaded once, up front; the runs only run.
            plan.load = false;
            Ok((ycsb, plan))
        })
        .collect::<Result<_, BenchError>>()?;

    let redis_settings = ServerSettings {
        durability: Some(durability),
        ..ServerSettings::default()
    };
    let dinomo_settings = ServerSettings {
        durability: Some(durability),
        ..args.server.settings()
    };
    let dinomo_template = CommandTemplate::parse(dinomo_cmd)?;
    let dinomo_durability = if dinomo_template.uses(Placeholder::Durability) {
        format!("{durability}: passed to the server as {{durability}}")
    } else {
        format!(
            "as its command sets it: the template has no {{durability}}, so the asked-for \
             {durability} is not passed on"
        )
    };
    log(&format!("starting redis ({durability})"));
    let redis = TemplateLauncher {
        template: redis_template(&args.redis_server, durability)?,
        timeout,
    }
    .start(&redis_settings)?;
    log("starting dinomo");
    let dinomo = TemplateLauncher {
        template: dinomo_template,
        timeout,
    }
    .start(&dinomo_settings)?;
    let sides: [(&str, &SpawnedTarget, &ServerSettings); 2] = [
        ("redis", &redis, &redis_settings),
        ("dinomo", &dinomo, &dinomo_settings),
    ];

    // Load the records once into each server; every workload's plan has the same records.
    let (_, first) = &plans[0];
    for (name, target, _) in &sides {
        log(&format!(
            "loading {} records into {name}",
            first.config.records
        ));
        let mut plan = first.clone();
        plan.load = true;
        let loaded = run_load(*target, &plan)?;
        if loaded.errors_total() > 0 {
            return Err(BenchError::Invalid(format!(
                "{name} refused {} of {} SETs while loading; first error: {}",
                loaded.errors_total(),
                loaded.ops_total(),
                loaded.error_samples.first().map_or("?", String::as_str)
            )));
        }
    }

    let mut workloads = Vec::with_capacity(plans.len());
    for (ycsb, plan) in &plans {
        let mut runs = Vec::with_capacity(2 * args.rounds);
        let mut throughput_ratios = Vec::with_capacity(args.rounds);
        let mut p99_ratios = Vec::with_capacity(args.rounds);
        for round in 0..args.rounds {
            let mut pair: Vec<RunReport> = Vec::with_capacity(2);
            for (name, target, settings) in &sides {
                log(&format!(
                    "workload {ycsb} round {}/{}: {name}",
                    round + 1,
                    args.rounds
                ));
                let report = run_bench(*target as &dyn Target, plan, settings)?;
                pair.push(report.clone());
                runs.push(CompareRun {
                    round,
                    side: (*name).to_owned(),
                    report,
                });
            }
            let (redis_run, dinomo_run) = (&pair[0], &pair[1]);
            if redis_run.ops_per_sec > 0.0 {
                throughput_ratios.push(dinomo_run.ops_per_sec / redis_run.ops_per_sec);
            }
            if let (Some(r), Some(d)) = (redis_run.latency_us, dinomo_run.latency_us)
                && r.p99 > 0.0
            {
                p99_ratios.push(d.p99 / r.p99);
            }
        }
        workloads.push(CompareWorkload {
            workload: ycsb.to_string(),
            distribution: plan.config.spec.distribution.to_string(),
            throughput_ratio: RatioSummary::of(&throughput_ratios),
            p99_ratio: RatioSummary::of(&p99_ratios),
            throughput_ratios,
            p99_ratios,
            runs,
        });
    }

    let first = &plans[0].1;
    Ok(CompareReport {
        schema: COMPARE_SCHEMA.to_owned(),
        date: now_utc(),
        machine: Machine::detect(),
        durability,
        rounds: args.rounds,
        redis: Side {
            command: redis.server().command_line(),
            version: redis.server_version().ok().flatten(),
            durability: redis_durability(durability),
        },
        dinomo: Side {
            command: dinomo.server().command_line(),
            version: dinomo.server_version().ok().flatten(),
            durability: dinomo_durability,
        },
        records: first.config.records,
        value_bytes: first.config.value_bytes,
        threads: first.concurrency.threads,
        pipeline: first.concurrency.pipeline,
        seed: first.config.seed,
        workloads,
    })
}

/// The comparison as a table for the terminal.
pub fn to_table(report: &CompareReport) -> String {
    let side = |name: &str, s: &Side| {
        format!(
            "{name:<7}{}: {}\n       durability {}\n",
            s.version.as_deref().unwrap_or("version unknown"),
            s.command,
            s.durability
        )
    };
    let mut out = format!(
        "compare dinomo with redis, durability {}\nmachine {}; {}\n{}{}",
        report.durability,
        report.machine.summary(),
        report.date,
        side("redis", &report.redis),
        side("dinomo", &report.dinomo),
    );
    out.push_str(&format!(
        "{} rounds per workload, alternating redis then dinomo; {} records of {} B; {} connections \
         x {} in flight; seed {}\n",
        report.rounds,
        report.records,
        report.value_bytes,
        report.threads,
        report.pipeline,
        report.seed
    ));
    out.push_str(&format!(
        "{:<9}{:<26}{:>28}{:>28}\n",
        "workload", "distribution", "throughput dinomo/redis", "p99 dinomo/redis"
    ));
    let fmt = |s: Option<RatioSummary>| {
        s.map_or("-".to_owned(), |s| {
            format!("{:.3} ({:.3}-{:.3})", s.median, s.min, s.max)
        })
    };
    for w in &report.workloads {
        out.push_str(&format!(
            "{:<9}{:<26}{:>28}{:>28}\n",
            w.workload,
            w.distribution,
            fmt(w.throughput_ratio),
            fmt(w.p99_ratio)
        ));
    }
    out.push_str(
        "(median of the per-round ratios, min-max in brackets; above 1 means dinomo is \
                  faster for throughput and slower for p99)\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_summaries() {
        assert_eq!(RatioSummary::of(&[]), None);
        assert_eq!(
            RatioSummary::of(&[1.2, 0.8, 1.0]),
            Some(RatioSummary {
                median: 1.0,
                min: 0.8,
                max: 1.2
            })
        );
        assert_eq!(RatioSummary::of(&[2.0, 1.0]).unwrap().median, 1.5);
        assert_eq!(RatioSummary::of(&[f64::NAN, 3.0]).unwrap().median, 3.0);
    }

    #[test]
    fn redis_settings_match_the_durability() {
        let settings = ServerSettings::default();
        let render = |durability| {
            redis_template("redis-server", durability)
                .unwrap()
                .render(&crate::server::TemplateValues {
                    port: 7,
                    dir: std::path::Path::new("/d"),
                    settings: &settings,
                })
                .unwrap()
                .join(" ")
        };
        let memory = render(Durability::Memory);
        assert!(memory.contains("--save  --daemonize"), "{memory}");
        assert!(memory.contains("--appendonly no"));
        assert!(memory.contains("--port 7 --bind 127.0.0.1"));
        let flush = render(Durability::Flush);
        assert!(
            flush.contains("--appendonly yes --appendfsync always"),
            "{flush}"
        );
    }
}
