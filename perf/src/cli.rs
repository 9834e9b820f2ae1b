//! The command line of `dinomo-bench` (clap derive), and its translation into plans.
//!
//! `dinomo-bench [OPTIONS]` is one run; `dinomo-bench sweep cache|rtt|cores` and
//! `dinomo-bench compare` are the multi-run figures. The option groups are shared: the workload
//! shape ([`SizeArgs`]), the key distribution ([`DistributionArgs`]) and the server settings
//! ([`ServerArgs`]). Parsing checks what clap cannot (ranges, conflicts between a sweep and the
//! setting it sweeps) and returns [`crate::BenchError::Invalid`] with a sentence saying what to do.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::BenchError;
use crate::bench::BenchPlan;
use crate::constants::SERVER_START_TIMEOUT_DEFAULT;
use crate::driver::{Concurrency, Stop};
use dinomo_dataplane::cache::Policy;
use dinomo_dataplane::config::Durability;
use dinomo_dataplane::units::{parse_duration, parse_size};

use crate::target::{ServerSettings, TargetSpec};
use crate::units::parse_count;
use crate::workload::{KeyDistribution, KeyOrder, WorkloadConfig, WorkloadSpec, Ycsb};

/// Operations of a plain run when `--ops` is not given.
pub const RUN_OPS_DEFAULT: u64 = 1_000_000;
/// Operations per point of a sweep or per run of `compare` when `--ops` is not given.
pub const POINT_OPS_DEFAULT: u64 = 200_000;

const ABOUT: &str = "Load driver for dinomo (and any RESP server): YCSB workloads, closed loop, \
                     pipelined, with latency percentiles and dinomo's own round-trip counters";

const LONG_ABOUT: &str = "\
Load driver for dinomo (and any RESP server).

A run has a load phase (SET every record, pipelined) and a run phase: a closed loop in which each \
of --threads connections keeps --pipeline requests outstanding, until --ops operations are done or \
--duration has passed. YCSB read is GET, update and insert are SET, read-modify-write is GET then \
SET (one operation, latency of both). Everything is seeded: the same --seed gives the same keys, \
operations and values.

The report (terminal table, and JSON with --json) has throughput, p50/p99/p99.9 latency and errors; \
against dinomo it also has round trips, verbs and bytes per operation by cache outcome and the \
hit ratios, read from `INFO dinomo` before and after the run phase. On a shared 2-core machine \
absolute figures are noise: compare runs made in the same session (see `compare` and `sweep`).";

const AFTER_HELP: &str = "\
Examples:
  dinomo-bench --target resp://127.0.0.1:6379 --workload B --records 100k --ops 1M --json b.json
  dinomo-bench --server-cmd 'dinomo serve --port {port} --dir {dir} --cache-policy {policy} \
--cache-bytes {bytes}' --cache-policy dac --cache-bytes 64MiB --workload C --zipf-exact 0.99
  dinomo-bench sweep cache --server-cmd '...' --json cache.json --svg cache.svg
  dinomo-bench compare --server-cmd 'dinomo serve --port {port} --dir {dir}' --rounds 3

Server command placeholders: {port} {dir} {policy} {bytes} {rtt} {rtt_ns} {cores} {durability}";

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "dinomo-bench",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<CliCommand>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// The multi-run figures.
#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Sweep one server setting with a fresh server per point: cache budget, round-trip delay or
    /// worker cores. Writes one JSON with every point and an SVG plot.
    #[command(subcommand)]
    Sweep(SweepCommand),
    /// Run the same workloads against Redis and dinomo alternately (A B A B ...) and print the
    /// dinomo/redis ratios of throughput and p99 latency.
    Compare(CompareArgs),
}

/// One run.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// What to run against: `resp://HOST:PORT` (dinomo or Redis) or `embedded` (a dinomo node in
    /// this process, with its memory node on the `local` fabric: no network, the design alone).
    /// May be omitted with --server-cmd, which starts a server on a free loopback port.
    #[arg(long, value_name = "TARGET", value_parser = TargetSpec::from_str)]
    pub target: Option<TargetSpec>,
    /// YCSB core workload: A (50% read, 50% update), B (95% read, 5% update), C (read only), D
    /// (95% read of the latest records, 5% insert), F (50% read, 50% read-modify-write). E needs
    /// range scans, which dinomo's hash index does not offer.
    #[arg(long, value_name = "A|B|C|D|F", default_value = "A", value_parser = parse_ycsb)]
    pub workload: Ycsb,
    #[command(flatten)]
    pub distribution: DistributionArgs,
    #[command(flatten)]
    pub size: SizeArgs,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// The key distribution; by default each workload's own (YCSB's scrambled zipfian 0.99, and
/// latest 0.99 for D).
#[derive(Debug, Clone, Default, Args)]
#[group(multiple = false)]
pub struct DistributionArgs {
    /// YCSB's scrambled zipfian with skew THETA in [0, 1): hot keys are hashed over the key space,
    /// which makes the skew over N keys flatter than an exact Zipf.
    #[arg(long, value_name = "THETA")]
    pub zipf: Option<f64>,
    /// The exact Zipf(THETA) over the records, as the DINOMO benchmark samples it (hottest record
    /// first). Use it for parity with DINOMO's numbers.
    #[arg(long, value_name = "THETA")]
    pub zipf_exact: Option<f64>,
    /// Every record equally likely.
    #[arg(long)]
    pub uniform: bool,
    /// YCSB's skewed latest: newer records are hotter.
    #[arg(long, value_name = "THETA")]
    pub latest: Option<f64>,
}

impl DistributionArgs {
    /// The distribution asked for, or `None` for the workload's own.
    pub fn distribution(&self) -> Option<KeyDistribution> {
        if self.uniform {
            return Some(KeyDistribution::Uniform);
        }
        if let Some(theta) = self.zipf {
            return Some(KeyDistribution::ScrambledZipfian { theta });
        }
        if let Some(theta) = self.zipf_exact {
            return Some(KeyDistribution::ZipfExact { theta });
        }
        self.latest.map(|theta| KeyDistribution::Latest { theta })
    }
}

/// How records become key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyOrderArg {
    /// `user` + FNV hash of the record number (YCSB's default).
    Hashed,
    /// `user` + the record number.
    Ordered,
}

/// The size and shape of a run.
#[derive(Debug, Clone, Args)]
pub struct SizeArgs {
    /// Records loaded before the run (100000, 100k, 1M, 1e6).
    #[arg(long, value_name = "N", default_value = "100000", value_parser = parse_count_arg)]
    pub records: u64,
    /// Operations of the run phase [default: 1000000 for a run; 200000 per point of a sweep or
    /// per run of compare].
    #[arg(long, value_name = "N", value_parser = parse_count_arg, conflicts_with = "duration")]
    pub ops: Option<u64>,
    /// Run for this long instead of a number of operations (30, 30s, 2m, 500ms).
    #[arg(long, value_name = "SECS", value_parser = parse_duration_arg)]
    pub duration: Option<Duration>,
    /// Connections, one thread each.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub threads: usize,
    /// Requests each connection keeps outstanding.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub pipeline: usize,
    /// Bytes per value (1006 as in DINOMO; 4096, 4KiB, 1MB).
    #[arg(long, value_name = "SIZE", default_value = "1006", value_parser = parse_size_arg)]
    pub value_size: u64,
    /// Seed of every random stream (keys, operations, values).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// How record numbers become key names.
    #[arg(long, value_enum, default_value = "hashed")]
    pub key_order: KeyOrderArg,
    /// Skip the load phase (the records are already there).
    #[arg(long)]
    pub no_load: bool,
}

/// The server the bench starts, and its settings.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Start the server with this command (on 127.0.0.1, a free port) and stop it afterwards;
    /// sweeps start one per point. Placeholders: {port} {dir} {policy} {bytes} {rtt} {rtt_ns}
    /// {cores} {durability}. Example: 'dinomo serve --port {port} --dir {dir}'.
    #[arg(long, value_name = "TEMPLATE")]
    pub server_cmd: Option<String>,
    /// Cache policy of the dinomo server: dac, value, shortcut or none ({policy}).
    #[arg(long, value_name = "POLICY", value_parser = Policy::from_str)]
    pub cache_policy: Option<Policy>,
    /// Cache budget of the dinomo server, e.g. 64MiB ({bytes}).
    #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
    pub cache_bytes: Option<u64>,
    /// Round-trip delay injected into the fabric, e.g. 1.6us ({rtt}, {rtt_ns}).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub rtt_delay: Option<Duration>,
    /// Worker cores of the dinomo server ({cores}).
    #[arg(long, value_name = "N")]
    pub cores: Option<usize>,
    /// When writes are acknowledged: memory or flush ({durability}).
    #[arg(long, value_name = "DURABILITY", value_parser = Durability::from_str)]
    pub durability: Option<Durability>,
    /// How long a started server may take to answer PING.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg,
          default_value = "10s")]
    pub server_timeout: Duration,
}

impl ServerArgs {
    /// The settings given on the command line.
    pub fn settings(&self) -> ServerSettings {
        ServerSettings {
            cache_policy: self.cache_policy,
            cache_bytes: self.cache_bytes,
            rtt_delay: self.rtt_delay,
            cores: self.cores,
            durability: self.durability,
        }
    }
}

impl Default for ServerArgs {
    fn default() -> Self {
        Self {
            server_cmd: None,
            cache_policy: None,
            cache_bytes: None,
            rtt_delay: None,
            cores: None,
            durability: None,
            server_timeout: SERVER_START_TIMEOUT_DEFAULT,
        }
    }
}

/// The sweeps.
#[derive(Debug, Subcommand)]
pub enum SweepCommand {
    /// Cache budget from 1% to 100% of the dataset, per cache policy, workload and distribution:
    /// round trips per operation and throughput relative to no cache.
    Cache(CacheSweepArgs),
    /// Injected fabric round-trip delay: throughput relative to no delay, and round trips.
    Rtt(RttSweepArgs),
    /// Worker cores: throughput and p99 relative to one core.
    Cores(CoresSweepArgs),
}

/// What every sweep takes.
#[derive(Debug, Clone, Args)]
pub struct SweepCommon {
    /// `embedded` to sweep the in-process dataplane (a fresh node per point); without it,
    /// --server-cmd starts a server per point.
    #[arg(long, value_name = "TARGET", value_parser = TargetSpec::from_str)]
    pub target: Option<TargetSpec>,
    /// YCSB workloads to run at every point.
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "a,b,c",
          value_parser = parse_ycsb)]
    pub workloads: Vec<Ycsb>,
    #[command(flatten)]
    pub size: SizeArgs,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Where to write the JSON with every point [default: sweep-<kind>.json].
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Where to draw the plot [default: the JSON path with .svg].
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

/// `sweep cache`.
#[derive(Debug, Clone, Args)]
pub struct CacheSweepArgs {
    #[command(flatten)]
    pub common: SweepCommon,
    /// Cache policies; `none` is always run, as the baseline.
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "dac,value,shortcut,none",
          value_parser = Policy::from_str)]
    pub policies: Vec<Policy>,
    /// Cache budgets in percent of the dataset (keys and values), each in (0, 100].
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "1,2,5,10,20,50,100"
    )]
    pub budgets: Vec<f64>,
    /// Key distributions: zipf-exact:THETA, zipf:THETA (scrambled), latest:THETA, uniform.
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "zipf-exact:0.99,uniform",
          value_parser = parse_distribution)]
    pub distributions: Vec<KeyDistribution>,
}

/// `sweep rtt`.
#[derive(Debug, Clone, Args)]
pub struct RttSweepArgs {
    #[command(flatten)]
    pub common: SweepCommon,
    #[command(flatten)]
    pub distribution: DistributionArgs,
    /// Round-trip delays; 0 is always run, as the baseline.
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "0,1.6us,5us",
          value_parser = parse_duration_arg)]
    pub delays: Vec<Duration>,
}

/// `sweep cores`.
#[derive(Debug, Clone, Args)]
pub struct CoresSweepArgs {
    #[command(flatten)]
    pub common: SweepCommon,
    #[command(flatten)]
    pub distribution: DistributionArgs,
    /// Worker core counts [default: 1 to the machine's cores]; 1 is always run, as the baseline.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub core_counts: Vec<usize>,
}

/// `compare`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// The Redis server binary (Debian's `redis-server`).
    #[arg(long, value_name = "PATH", default_value = "redis-server")]
    pub redis_server: String,
    /// YCSB workloads to compare.
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "a,b,c,d,f",
          value_parser = parse_ycsb)]
    pub workloads: Vec<Ycsb>,
    /// Rounds per workload; each round runs Redis, then dinomo.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub rounds: usize,
    #[command(flatten)]
    pub distribution: DistributionArgs,
    #[command(flatten)]
    pub size: SizeArgs,
    /// The dinomo side: --server-cmd is required; its --durability (default memory) also sets
    /// Redis: memory is `appendonly no`, flush is `appendonly yes` with `appendfsync always`.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Also write every run and the ratios as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

fn parse_ycsb(text: &str) -> Result<Ycsb, String> {
    let ycsb: Ycsb = text.parse().map_err(|e| format!("{e}"))?;
    WorkloadSpec::ycsb(ycsb).map_err(|e| format!("{e}"))?;
    Ok(ycsb)
}

fn parse_count_arg(text: &str) -> Result<u64, String> {
    parse_count(text).map_err(|e| e.to_string())
}

fn parse_size_arg(text: &str) -> Result<u64, String> {
    parse_size(text).map_err(|e| e.to_string())
}

fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

/// Parses `zipf-exact:0.99`, `zipf:0.99`, `latest:0.99`, `uniform`, or the names distributions
/// print (`zipf-exact(0.99)`).
pub fn parse_distribution(text: &str) -> Result<KeyDistribution, String> {
    let trimmed = text.trim();
    let distribution = match trimmed.split_once(':') {
        Some((name, theta)) => {
            let theta: f64 = theta
                .trim()
                .parse()
                .map_err(|_| format!("{text:?}: {theta:?} is not a number"))?;
            match name.trim() {
                "zipf-exact" => KeyDistribution::ZipfExact { theta },
                "zipf" | "scrambled-zipfian" => KeyDistribution::ScrambledZipfian { theta },
                "latest" => KeyDistribution::Latest { theta },
                _ => {
                    return Err(format!(
                        "{text:?} is not a distribution (zipf-exact:THETA, zipf:THETA, \
                         latest:THETA, uniform)"
                    ));
                }
            }
        }
        None => trimmed.parse().map_err(|e| format!("{e}"))?,
    };
    distribution.validate().map_err(|e| e.to_string())?;
    Ok(distribution)
}

impl SizeArgs {
    /// When the run phase stops, with `ops_default` when neither --ops nor --duration is given.
    pub fn stop(&self, ops_default: u64) -> Stop {
        match (self.duration, self.ops) {
            (Some(duration), _) => Stop::Duration(duration),
            (None, ops) => Stop::Ops(ops.unwrap_or(ops_default)),
        }
    }

    /// The plan of one run of workload `ycsb`, with `distribution` instead of the workload's own.
    pub fn plan(
        &self,
        ycsb: Ycsb,
        distribution: Option<KeyDistribution>,
        ops_default: u64,
        show_progress: bool,
    ) -> Result<BenchPlan, BenchError> {
        let mut spec = WorkloadSpec::ycsb(ycsb)?;
        if let Some(distribution) = distribution {
            spec = spec.with_distribution(distribution)?;
        }
        let stop = self.stop(ops_default);
        let inserts_expected = match stop {
            Stop::Ops(ops) => (ops as f64 * spec.insert).ceil() as u64,
            Stop::Duration(_) => 0,
        };
        let value_bytes = usize::try_from(self.value_size).map_err(|_| {
            BenchError::Invalid(format!("--value-size {} is too large", self.value_size))
        })?;
        let concurrency = Concurrency {
            threads: self.threads,
            pipeline: self.pipeline,
        };
        concurrency.validate()?;
        Ok(BenchPlan {
            ycsb,
            config: WorkloadConfig {
                records: self.records,
                spec,
                key_order: match self.key_order {
                    KeyOrderArg::Hashed => KeyOrder::Hashed,
                    KeyOrderArg::Ordered => KeyOrder::Ordered,
                },
                value_bytes,
                seed: self.seed,
                inserts_expected,
            },
            concurrency,
            stop,
            load: !self.no_load,
            show_progress,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("dinomo-bench").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_full_run_command_line() {
        let cli = parse(&[
            "--target",
            "resp://127.0.0.1:6379",
            "--workload",
            "f",
            "--records",
            "10k",
            "--ops",
            "1M",
            "--threads",
            "4",
            "--pipeline",
            "8",
            "--zipf-exact",
            "0.99",
            "--value-size",
            "4KiB",
            "--cache-policy",
            "shortcut",
            "--cache-bytes",
            "64MiB",
            "--rtt-delay",
            "1.6us",
            "--seed",
            "7",
            "--json",
            "out.json",
            "--no-load",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        let run = cli.run;
        assert_eq!(run.workload, Ycsb::F);
        assert_eq!(run.size.records, 10_000);
        assert_eq!(run.size.ops, Some(1_000_000));
        assert_eq!(run.size.value_size, 4096);
        assert_eq!(run.server.cache_bytes, Some(64 << 20));
        assert_eq!(run.server.rtt_delay, Some(Duration::from_nanos(1600)));
        assert_eq!(run.server.cache_policy, Some(Policy::ShortcutOnly));
        assert_eq!(
            run.distribution.distribution(),
            Some(KeyDistribution::ZipfExact { theta: 0.99 })
        );
        let plan = run
            .size
            .plan(run.workload, run.distribution.distribution(), 5, false)
            .unwrap();
        assert_eq!(plan.stop, Stop::Ops(1_000_000));
        assert!(!plan.load);
        assert_eq!(plan.config.value_bytes, 4096);
        assert_eq!(plan.config.seed, 7);
    }

    #[test]
    fn defaults_and_conflicts() {
        let cli = parse(&["--target", "embedded"]).unwrap();
        assert_eq!(cli.run.workload, Ycsb::A);
        assert_eq!(
            cli.run.size.stop(RUN_OPS_DEFAULT),
            Stop::Ops(RUN_OPS_DEFAULT)
        );
        assert_eq!(cli.run.distribution.distribution(), None);
        let timed = parse(&["--duration", "2.5s"]).unwrap();
        assert_eq!(
            timed.run.size.stop(1),
            Stop::Duration(Duration::from_millis(2500))
        );
        assert!(parse(&["--ops", "10", "--duration", "1s"]).is_err());
        assert!(parse(&["--uniform", "--zipf", "0.9"]).is_err());
        assert!(parse(&["--workload", "E"]).is_err());
        assert!(parse(&["--target", "redis://x:1"]).is_err());
        assert!(parse(&["--value-size", "12 parsecs"]).is_err());
        assert!(parse(&["--cache-policy", "lru"]).is_err());
    }

    #[test]
    fn workload_d_expects_its_inserts() {
        let cli = parse(&["--workload", "D", "--ops", "1000", "--zipf-exact", "0.9"]).unwrap();
        let plan = cli
            .run
            .size
            .plan(
                cli.run.workload,
                cli.run.distribution.distribution(),
                1,
                false,
            )
            .unwrap();
        assert_eq!(plan.config.inserts_expected, 50);
    }

    #[test]
    fn subcommands() {
        let cli = parse(&[
            "sweep",
            "cache",
            "--server-cmd",
            "x {port}",
            "--policies",
            "dac,none",
            "--budgets",
            "1,50",
            "--distributions",
            "zipf-exact:0.99,uniform,zipf-exact(0.5)",
            "--records",
            "1k",
        ])
        .unwrap();
        let Some(CliCommand::Sweep(SweepCommand::Cache(cache))) = cli.command else {
            panic!("not a cache sweep");
        };
        assert_eq!(cache.policies, vec![Policy::Dac, Policy::None]);
        assert_eq!(cache.budgets, vec![1.0, 50.0]);
        assert_eq!(cache.distributions.len(), 3);
        assert_eq!(cache.common.workloads, vec![Ycsb::A, Ycsb::B, Ycsb::C]);
        let cli = parse(&[
            "sweep",
            "rtt",
            "--delays",
            "0,1.6us,5us",
            "--server-cmd",
            "x",
        ])
        .unwrap();
        let Some(CliCommand::Sweep(SweepCommand::Rtt(rtt))) = cli.command else {
            panic!("not an rtt sweep");
        };
        assert_eq!(rtt.delays[1], Duration::from_nanos(1600));
        let cli = parse(&[
            "compare",
            "--server-cmd",
            "redis-server --port {port}",
            "--workloads",
            "a,c",
            "--rounds",
            "2",
            "--durability",
            "flush",
        ])
        .unwrap();
        let Some(CliCommand::Compare(compare)) = cli.command else {
            panic!("not compare");
        };
        assert_eq!(compare.workloads, vec![Ycsb::A, Ycsb::C]);
        assert_eq!(compare.server.durability, Some(Durability::Flush));
        // Run options do not mix with a subcommand.
        assert!(parse(&["--records", "5", "compare", "--server-cmd", "x"]).is_err());
    }

    #[test]
    fn distribution_names() {
        assert_eq!(
            parse_distribution("zipf:0.9").unwrap(),
            KeyDistribution::ScrambledZipfian { theta: 0.9 }
        );
        assert_eq!(
            parse_distribution("uniform").unwrap(),
            KeyDistribution::Uniform
        );
        assert_eq!(
            parse_distribution("latest(0.99)").unwrap(),
            KeyDistribution::Latest { theta: 0.99 }
        );
        assert!(parse_distribution("zipf:1.5").is_err());
        assert!(parse_distribution("pareto:1").is_err());
        assert!(parse_distribution("zipf:x").is_err());
    }
}
