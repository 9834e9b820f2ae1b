//! `dinomo serve`: the all-in-one server — a memory node on a pool file in `--dir`, and one KVS
//! node over the local fabric, in one process ([`dinomo_dataplane::allinone`] wires them). With
//! no arguments it creates or opens
//! `./dinomo-data/`, listens on 127.0.0.1:7379 (each core also on the ports after it), and
//! prints `listening on <addr>` as its only line on stdout. Ctrl-C or SIGTERM stops it cleanly:
//! every write a core staged is committed and acknowledged (or failed) before the pool is
//! marked cleanly stopped.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use dinomo_control::KnId;
use dinomo_dataplane::allinone::{AllInOne, AllInOneConfig};
use dinomo_dataplane::config::Named;
use dinomo_dataplane::kn::EngineConfig;
use dinomo_dataplane::kn::node::{KnNode, KnOptions};
use dinomo_dataplane::mn::memnode::{CreateMode, NodeOptions};
use dinomo_dataplane::units::parse_size;
use dinomo_pmem::constants::BLOCK_SIZE_DEFAULT;
use dinomo_pmem::{ChainId, PoolConfig};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::knconf::{KnFlags, KnSettings, read_file, resolve};

/// Directory of the pool when --dir is not given.
const DIR_DEFAULT: &str = "dinomo-data";
/// The pool file's name in the directory.
const POOL_FILE: &str = "pool";
/// Size of a new pool (the file is sparse: log blocks take disk space when first handed out).
const POOL_SIZE_DEFAULT: &str = "4GiB";
/// How often the serving process looks for a stop request.
const CONTROL_TICK: Duration = Duration::from_millis(50);
const LOG: &str = "dinomo serve";

/// Run a memory node and a KVS node in one process: the zero-configuration server.
///
/// Creates (or opens) the pool in --dir, recovers it, and serves the Redis protocol. Prints
/// `listening on <addr>` on stdout once it serves; logs go to stderr. Stops cleanly on SIGTERM or
/// Ctrl-C.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    dinomo serve\n  \
    dinomo serve --dir /var/lib/dinomo --port 6379 --cores 4 --cache-bytes 4GiB --durability flush\n  \
    dinomo serve --config /etc/dinomo/serve.toml\n\n\
    Sizes take binary units: 8M, 8MB and 8MiB are all 8 MiB; durations take ns, us, ms, s, m or h.")]
pub struct Args {
    /// Directory of the pool file [default: ./dinomo-data].
    #[arg(long, value_name = "PATH")]
    dir: Option<PathBuf>,
    /// Size of the pool when it is created, e.g. 16GiB [default: 4GiB, sparse].
    #[arg(long, value_name = "SIZE")]
    pool_size: Option<String>,
    /// Log block size when the pool is created [default: 8MiB].
    #[arg(long, value_name = "SIZE")]
    block_size: Option<String>,
    /// Background merge threads of the memory node [default: 1].
    #[arg(long, value_name = "N")]
    merge_threads: Option<usize>,
    #[command(flatten)]
    kn: KnFlags,
}

/// Runs the all-in-one server until a stop signal.
pub fn run(args: Args) -> anyhow::Result<()> {
    let file = read_file(args.kn.config.as_deref())?;
    let settings = resolve(&args.kn, &file)?;
    let dir = args
        .dir
        .clone()
        .or_else(|| file.dir.clone())
        .unwrap_or_else(|| PathBuf::from(DIR_DEFAULT));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    let pool_size_text = args
        .pool_size
        .clone()
        .or_else(|| file.pool_size.clone())
        .unwrap_or_else(|| POOL_SIZE_DEFAULT.into());
    let pool_size = parse_size(&pool_size_text).map_err(|e| anyhow!("invalid --pool-size: {e}"))?;
    let block_size = match args.block_size.as_deref().or(file.block_size.as_deref()) {
        Some(text) => parse_size(text).map_err(|e| anyhow!("invalid --block-size: {e}"))?,
        None => BLOCK_SIZE_DEFAULT,
    };
    let merge_threads = args.merge_threads.or(file.merge_threads).unwrap_or(1);

    let stop = install_signals()?;
    let pool_config = PoolConfig {
        block_size,
        ..PoolConfig::with_size(pool_size)
    };
    let server = AllInOne::start(AllInOneConfig {
        pool: dir.join(POOL_FILE),
        create: CreateMode::CreateIfMissing(pool_config),
        durability: settings.durability,
        memnode: NodeOptions {
            merge_threads,
            ..NodeOptions::default()
        },
        rtt: settings.rtt_delay,
        kn: kn_options(&settings, KnId(1), 0),
    })?;
    let memnode = Arc::clone(server.memnode());
    for line in memnode.startup_report().to_string().lines() {
        eprintln!("{LOG}: {line}");
    }
    announce(server.node(), &settings, LOG)?;

    while !stop.load(Ordering::SeqCst) {
        if let Some(reason) = memnode.failure() {
            eprintln!("{LOG}: the memory node stopped taking writes: {reason}");
            break;
        }
        std::thread::sleep(CONTROL_TICK);
    }
    eprintln!("{LOG}: stopping");
    let report = server.stop()?;
    eprintln!(
        "{LOG}: clean shutdown (the last merge folded {} entries)",
        report.merged.entries
    );
    if let Some(reason) = memnode.failure() {
        bail!("the memory node failed: {reason}");
    }
    Ok(())
}

/// The first SIGTERM or SIGINT asks for a graceful stop; a second one ends the process at once.
pub fn install_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))
            .context("installing the signal handlers")?;
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing the signal handlers")?;
    }
    Ok(stop)
}

/// The node options from resolved settings; the node's cores write chains from `first_chain`.
pub fn kn_options(settings: &KnSettings, kn: KnId, first_chain: u32) -> KnOptions {
    let per_core = (settings.cache_bytes / settings.cores as u64) as usize;
    let engine = EngineConfig {
        cache_policy: settings.cache_policy,
        cache_bytes: per_core,
        durability: settings.durability,
        batch_bytes_max: settings.batch_bytes,
        batch_delay: settings.batch_delay,
        ..EngineConfig::new(ChainId(first_chain), dinomo_pmem::Epoch(1))
    };
    KnOptions {
        kn,
        host: settings.bind.clone(),
        base_port: settings.port,
        cores: settings.cores,
        first_chain,
        engine,
        pin: settings.pin,
        sqpoll: settings.sqpoll,
        requirepass: settings.requirepass.clone(),
        limits: settings.limits,
        connections_max: settings.maxclients,
        listen: true,
    }
}

/// Prints the one stdout line and logs where each core listens, with the log prefix `log`.
pub fn announce(node: &KnNode, settings: &KnSettings, log: &str) -> anyhow::Result<()> {
    let base = node
        .base_addr()
        .ok_or_else(|| anyhow!("the node has no listener"))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {base}").context("writing to stdout")?;
    stdout.flush().context("writing to stdout")?;
    drop(stdout);
    let cores: Vec<String> = node
        .core_addrs()
        .iter()
        .zip(node.cpus())
        .map(|(a, cpu)| match cpu {
            Some(cpu) => format!("{a} (cpu {cpu})"),
            None => format!("{a} (unpinned)"),
        })
        .collect();
    eprintln!(
        "{log}: serving on {base} as kn {} (incarnation {}); cores: {}; cache {} per core ({}); \
         durability {}{}",
        node.shared().identity.kn,
        node.incarnation(),
        cores.join(", "),
        settings.cache_bytes / settings.cores as u64,
        settings.cache_policy.name(),
        settings.durability.name(),
        if settings.requirepass.is_some() {
            "; AUTH required"
        } else {
            ""
        },
    );
    Ok(())
}
