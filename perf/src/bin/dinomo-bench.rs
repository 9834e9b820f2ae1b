//! `dinomo-bench`: the load driver of dinomo. See `dinomo-bench --help` and `perf/README.md`.
//!
//! The binary only reads the command line, picks the target or launcher, and prints or writes what
//! the library returns: reports go to stdout (and to `--json` files), progress and per-point lines to
//! stderr, so that `dinomo-bench ... > table.txt` keeps only the results.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;

use dinomo_perf::bench::run_bench;
use dinomo_perf::cli::{Cli, CliCommand, RUN_OPS_DEFAULT, RunArgs, SweepCommand};
use dinomo_perf::resp_client::RespTarget;
use dinomo_perf::server::{CommandTemplate, TemplateLauncher};
use dinomo_perf::sweep::{self, SweepPlan};
use dinomo_perf::target::{Launched, Launcher, TargetSpec, launch_embedded};
use dinomo_perf::{compare, write_json};

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole chain of causes on one line, without a backtrace.
            eprintln!("dinomo-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    let show_progress = std::io::stdout().is_terminal();
    match cli.command {
        None => run(cli.run, show_progress),
        Some(CliCommand::Sweep(sweep)) => run_sweep(sweep, show_progress),
        Some(CliCommand::Compare(args)) => {
            let report = compare::run_compare(&args, show_progress, &mut |line| {
                eprintln!("compare: {line}")
            })?;
            print!("{}", compare::to_table(&report));
            if let Some(path) = &args.json {
                write_json(path, &report)?;
                eprintln!("compare: wrote {}", path.display());
            }
            Ok(())
        }
    }
}

/// One run against a running server, a server started from --server-cmd, or the embedded target.
fn run(args: RunArgs, show_progress: bool) -> Result<()> {
    let settings = args.server.settings();
    let target: Launched = match (&args.target, &args.server.server_cmd) {
        (Some(TargetSpec::Embedded), None) => launch_embedded(&settings)?,
        (None | Some(TargetSpec::Resp { .. }), Some(cmd)) => {
            if let Some(TargetSpec::Resp { port, .. }) = &args.target
                && *port != 0
            {
                bail!(
                    "--server-cmd starts the server on a free loopback port; give no --target \
                     (or resp://127.0.0.1:0) with it"
                );
            }
            let launcher = TemplateLauncher {
                template: CommandTemplate::parse(cmd)?,
                timeout: args.server.server_timeout,
            };
            launcher.launch(&settings)?
        }
        (Some(TargetSpec::Resp { host, port }), None) => {
            if !settings.is_default() {
                bail!(
                    "{} cannot be applied to the running server at {host}:{port}; give \
                     --server-cmd so that the bench starts a server with them, or --target embedded",
                    settings.given().join(", ")
                );
            }
            let addr = TargetSpec::resolve(host, *port)?;
            Box::new(RespTarget::new(addr))
        }
        (Some(TargetSpec::Embedded), Some(_)) => {
            bail!("--server-cmd starts a RESP server; it does not go with --target embedded")
        }
        (None, None) => bail!(
            "say what to run against: --target resp://HOST:PORT, --target embedded, or \
             --server-cmd TEMPLATE (see --help)"
        ),
    };
    let plan = args.size.plan(
        args.workload,
        args.distribution.distribution(),
        RUN_OPS_DEFAULT,
        show_progress,
    )?;
    let report = run_bench(target.as_ref(), &plan, &settings)?;
    drop(target);
    print!("{}", report.to_table());
    if let Some(path) = &args.json {
        write_json(path, &report).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn run_sweep(command: SweepCommand, show_progress: bool) -> Result<()> {
    let (plan, common): (SweepPlan, _) = match &command {
        SweepCommand::Cache(args) => (sweep::plan_cache(args, show_progress)?, &args.common),
        SweepCommand::Rtt(args) => (sweep::plan_rtt(args, show_progress)?, &args.common),
        SweepCommand::Cores(args) => (sweep::plan_cores(args, show_progress)?, &args.common),
    };
    let launcher = sweep::sweep_launcher(common)?;
    let json = common
        .json
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("sweep-{}.json", plan.kind.name())));
    let svg = common
        .svg
        .clone()
        .unwrap_or_else(|| json.with_extension("svg"));
    eprintln!(
        "sweep {}: {} points, {}",
        plan.kind.name(),
        plan.points.len(),
        launcher.label()
    );
    let report = sweep::run_sweep(&plan, launcher.as_ref(), &mut |line| {
        eprintln!("sweep: {line}")
    })?;
    write_json(&json, &report)?;
    sweep::plot(&report, &svg)?;
    print!("{}", sweep::to_table(&report));
    eprintln!("sweep: wrote {} and {}", json.display(), svg.display());
    Ok(())
}
