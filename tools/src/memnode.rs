//! `dinomo memnode`: the memory-node process. It opens or creates the pool file, recovers it
//! (logging the startup report to stderr), starts the background merge threads and the tcp verbs
//! server with the [`MemoryNode`] as its RPC handler, prints `listening on <addr>` as the only line
//! on stdout, and runs until SIGTERM or SIGINT. Then it stops the server (no more verbs or RPCs),
//! shuts the node down (last merge, clean-stop mark) and exits 0.
//!
//! A second SIGTERM or SIGINT during the stop ends the process at once with status 1; the pool
//! is then recovered at the next start like after a crash.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use dinomo_dataplane::config::{Durability, Named};
use dinomo_dataplane::fabric::RpcHandler;
use dinomo_dataplane::fabric::tcp::frame::TOKEN_BYTES_MAX;
use dinomo_dataplane::mn::memnode::{
    CreateMode, MERGE_THREADS_DEFAULT, MERGE_THREADS_MAX, MemnodeConfig, MemoryNode, MnError,
    NodeOptions,
};
use dinomo_dataplane::mn::tcp_server::{TcpServer, TcpServerConfig};
use dinomo_dataplane::units::parse_size;
use dinomo_pmem::constants::BLOCK_SIZE_DEFAULT;
use dinomo_pmem::{PoolConfig, PoolError};

use crate::named;

/// Size of a pool made by `--create` without `--size` (the file is sparse).
const POOL_SIZE_DEFAULT: &str = "1GiB";
/// How often the serving process looks for a stop request or a failure.
const CONTROL_TICK: Duration = Duration::from_millis(50);
/// What stderr lines of this process start with.
const LOG: &str = "dinomo memnode";

/// Serve a persistent memory pool to KVS nodes over the tcp fabric.
///
/// Opens the pool file (or creates it with --create), recovers it — merging every log entry a
/// previous run left unmerged — and serves one-sided verbs and the memory-node RPCs on --listen.
/// Prints `listening on <addr>` on stdout once it serves; everything else goes to stderr. Stops
/// gracefully on SIGTERM or SIGINT.
#[derive(Debug, clap::Args)]
#[command(
    group = clap::ArgGroup::new("auth").required(true).args(["token", "token_file"]),
    after_help = "Examples:\n  \
        dinomo memnode --pool /mnt/pmem/dinomo.pool --create --size 64GiB \\\n      \
        --listen 0.0.0.0:7000 --token-file /etc/dinomo/token\n  \
        dinomo memnode --pool /mnt/pmem/dinomo.pool --listen 0.0.0.0:7000 \\\n      \
        --token-file /etc/dinomo/token --durability memory --merge-threads 2\n\n\
        Sizes take binary units: B, K, M, G, T (KB = KiB = K, MB = MiB = M, ...: all powers of \
        1024)."
)]
pub struct Args {
    /// The pool file (on a DAX file system for real persistent memory).
    #[arg(long, value_name = "PATH")]
    pool: PathBuf,
    /// Create a new pool. A file that holds data is refused unless --overwrite is given.
    #[arg(long)]
    create: bool,
    /// Size of the new pool, e.g. 4GiB [default: 1GiB].
    #[arg(long, value_name = "SIZE", requires = "create")]
    size: Option<String>,
    /// Log block size of the new pool: a power of two from 4KiB to 1GiB [default: 8MiB].
    #[arg(long, value_name = "SIZE", requires = "create")]
    block_size: Option<String>,
    /// With --create: destroy whatever the pool file holds.
    #[arg(long, requires = "create")]
    overwrite: bool,
    /// Address to serve on, HOST:PORT; port 0 picks a free port (the line on stdout names it).
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// The cluster token KNs must show. Visible to other users in the process list: prefer
    /// --token-file.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// A file holding the cluster token (surrounding whitespace is ignored). The recommended way
    /// to pass the token; keep the file readable by its owner only.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// When a write counts as durable.
    #[arg(long, value_parser = named::value_parser::<Durability>(),
          default_value_t = Durability::Flush)]
    durability: Durability,
    /// Background merge threads (0 merges only when a KN asks).
    #[arg(long, value_name = "N", default_value_t = MERGE_THREADS_DEFAULT)]
    merge_threads: usize,
}

/// Runs the memory node until a stop signal.
pub fn run(args: Args) -> anyhow::Result<()> {
    let token = read_token(&args)?;
    let listen = resolve(&args.listen)?;
    if args.merge_threads > MERGE_THREADS_MAX {
        bail!(
            "--merge-threads {} exceeds the limit of {MERGE_THREADS_MAX}",
            args.merge_threads
        );
    }
    let create = if args.create {
        let size = parse_size(args.size.as_deref().unwrap_or(POOL_SIZE_DEFAULT))
            .map_err(|e| anyhow!("invalid --size: {e}"))?;
        let block_size = match &args.block_size {
            Some(text) => parse_size(text).map_err(|e| anyhow!("invalid --block-size: {e}"))?,
            None => BLOCK_SIZE_DEFAULT,
        };
        CreateMode::Create {
            config: PoolConfig {
                block_size,
                ..PoolConfig::with_size(size)
            },
            overwrite: args.overwrite,
        }
    } else {
        CreateMode::Open
    };

    let stop = crate::serve::install_signals()?;

    let node = MemoryNode::open(MemnodeConfig {
        pool: args.pool.clone(),
        create,
        durability: args.durability,
        options: NodeOptions {
            merge_threads: args.merge_threads,
            ..NodeOptions::default()
        },
    })
    .map_err(|e| explain(e, &args.pool))?;
    for line in node.startup_report().to_string().lines() {
        eprintln!("{LOG}: {line}");
    }
    let threads = node.start_background()?;

    let handler: Arc<dyn RpcHandler> = node.clone();
    let server = match TcpServer::start(
        Arc::clone(node.backend()),
        Some(handler),
        TcpServerConfig::new(listen, token),
    ) {
        Ok(server) => server,
        Err(e) => {
            // Nothing was served: the stop is still a clean one.
            let _ = node.shutdown();
            return Err(e).with_context(|| format!("cannot serve on {listen}"));
        }
    };
    let addr = server.local_addr();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {addr}").context("writing to stdout")?;
    stdout.flush().context("writing to stdout")?;
    drop(stdout);
    eprintln!(
        "{LOG}: serving boot {} on {addr}; durability {}, merge threads {threads}; \
         SIGTERM or SIGINT stops",
        node.boot(),
        args.durability.name(),
    );

    let mut failure_logged = false;
    let mut background_errors = 0;
    let mut server_failure = None;
    while !stop.load(Ordering::SeqCst) {
        if let Some(failure) = server.failure() {
            server_failure = Some(failure);
            break;
        }
        if !failure_logged && let Some(reason) = node.failure() {
            eprintln!("{LOG}: stopped taking writes after a pool error: {reason}");
            failure_logged = true;
        }
        // At most one line per tick, however often the merge fails.
        let counters = node.counters();
        if counters.background_errors > background_errors {
            eprintln!(
                "{LOG}: background merge error ({} so far): {}",
                counters.background_errors,
                counters.last_background_error.unwrap_or_default()
            );
            background_errors = counters.background_errors;
        }
        std::thread::sleep(CONTROL_TICK);
    }
    eprintln!("{LOG}: stopping");
    server.shutdown();
    let report = node.shutdown()?;
    eprintln!(
        "{LOG}: clean shutdown of boot {} (the last merge folded {} entries)",
        node.boot(),
        report.merged.entries
    );
    if let Some(failure) = server_failure {
        bail!("the verbs server stopped: {failure}");
    }
    Ok(())
}

/// The cluster token from --token or --token-file.
fn read_token(args: &Args) -> anyhow::Result<Vec<u8>> {
    let token = match (&args.token, &args.token_file) {
        (Some(token), _) => token.as_bytes().to_vec(),
        (None, Some(path)) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?;
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                eprintln!(
                    "{LOG}: warning: the token file {} is readable by other users",
                    path.display()
                );
            }
            bytes.trim_ascii().to_vec()
        }
        (None, None) => bail!("a cluster token is required: pass --token-file FILE"),
    };
    if token.is_empty() || token.len() > TOKEN_BYTES_MAX {
        bail!("the cluster token must be 1 to {TOKEN_BYTES_MAX} bytes");
    }
    Ok(token)
}

fn resolve(listen: &str) -> anyhow::Result<SocketAddr> {
    listen
        .to_socket_addrs()
        .with_context(|| format!("invalid --listen address '{listen}'"))?
        .next()
        .ok_or_else(|| anyhow!("--listen address '{listen}' resolves to nothing"))
}

/// Adds what to do next to the errors an operator can fix with a flag.
fn explain(e: MnError, path: &Path) -> anyhow::Error {
    match &e {
        MnError::Pool(PoolError::NotFound(_)) => {
            anyhow!("{e} (pass --create to make a new pool)")
        }
        MnError::Pool(PoolError::AlreadyExists(_)) => {
            anyhow!("{e} (pass --overwrite to destroy it, or drop --create to serve it)")
        }
        _ => anyhow::Error::new(e).context(format!("cannot serve the pool {}", path.display())),
    }
}
