//! `dinomo kn`: a KVS node against a separate memory node (`dinomo memnode`) over the tcp
//! fabric. Each worker core holds its own connection to the memory node; the node's control
//! thread holds one more, on which it fetches the memory node's counters for `INFO`.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use dinomo_control::KnId;
use dinomo_dataplane::fabric::tcp::TcpFabric;
use dinomo_dataplane::kn::node::KnNode;

use crate::knconf::{KnFlags, read_file, resolve};
use crate::serve::{announce, install_signals, kn_options};

/// Chains each KN id is given room for: node `n` writes chains from `(n - 1) * CHAINS_PER_KN`.
pub const CHAINS_PER_KN: u32 = 64;
const LOG: &str = "dinomo kn";

/// Run a KVS node against a memory node over TCP.
#[derive(Debug, clap::Args)]
#[command(
    group = clap::ArgGroup::new("auth").args(["token", "token_file"]),
    after_help = "Example:\n  \
        dinomo kn --memnode mn1:7000 --token-file /etc/dinomo/token --kn-id 2 --cores 4"
)]
pub struct Args {
    /// The memory node, HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    memnode: Option<String>,
    /// The cluster token (visible in the process list: prefer --token-file).
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// A file holding the cluster token.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// This node's id, 1 to 16: it picks the node's log chains [default: 1].
    #[arg(long, value_name = "N")]
    kn_id: Option<u32>,
    #[command(flatten)]
    kn: KnFlags,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let file = read_file(args.kn.config.as_deref())?;
    let settings = resolve(&args.kn, &file)?;
    if settings.rtt_delay > Duration::ZERO {
        bail!("--rtt-delay applies to the local fabric (dinomo serve) only");
    }
    let memnode = args
        .memnode
        .clone()
        .or_else(|| file.memnode.clone())
        .ok_or_else(|| anyhow!("--memnode HOST:PORT is required"))?;
    let addr = memnode
        .to_socket_addrs()
        .with_context(|| format!("invalid --memnode address '{memnode}'"))?
        .next()
        .ok_or_else(|| anyhow!("--memnode '{memnode}' resolves to nothing"))?;
    let token = match (
        &args.token,
        args.token_file.as_ref().or(file.token_file.as_ref()),
    ) {
        (Some(t), _) => t.as_bytes().to_vec(),
        (None, Some(path)) => std::fs::read(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?
            .trim_ascii()
            .to_vec(),
        (None, None) => bail!("a cluster token is required: pass --token-file FILE"),
    };
    let kn_id = args.kn_id.or(file.kn_id).unwrap_or(1);
    if !(1..=16).contains(&kn_id) {
        bail!("--kn-id must be 1 to 16");
    }
    if settings.cores as u32 > CHAINS_PER_KN {
        bail!("--cores is at most {CHAINS_PER_KN} per node");
    }
    let stop = install_signals()?;
    let fabric = TcpFabric::new(addr, token);
    let first_chain = (kn_id - 1) * CHAINS_PER_KN;
    // No in-process memory node: the node's control thread fetches its counters.
    let node = KnNode::start(
        &fabric,
        kn_options(&settings, KnId(kn_id), first_chain),
        None,
    )
    .with_context(|| format!("cannot start the KVS node against {addr}"))?;
    announce(&node, &settings, LOG)?;

    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("{LOG}: stopping");
    node.stop().context("stopping the KVS node")?;
    eprintln!("{LOG}: stopped cleanly");
    Ok(())
}
