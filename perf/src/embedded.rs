//! The `embedded` target: the dinomo dataplane linked into the bench process — a memory node on
//! a sparse temporary pool file, the local fabric (with the injected round-trip delay, if any),
//! and a KVS node without listeners ([`dinomo_dataplane::allinone`], as `dinomo serve` runs
//! them), reached through the embedded API. No network anywhere, so
//! it measures the design: the queue handoff to the owning core, the cache, the verbs.
//!
//! Each bench connection keeps up to its limit of requests outstanding on the node's cores and
//! collects the replies in request order.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use crossbeam_channel::Receiver;
use dinomo_control::KnId;
use dinomo_dataplane::allinone::{AllInOne, AllInOneConfig};
use dinomo_dataplane::cache::Policy;
use dinomo_dataplane::config::{Durability, Named};
use dinomo_dataplane::kn::embedded::StoreHandle;
use dinomo_dataplane::kn::node::KnOptions;
use dinomo_dataplane::kn::{Command as KnCommand, EngineConfig, Reply as KnReply, SetCond};
use dinomo_dataplane::mn::memnode::{CreateMode, NodeOptions};
use dinomo_dataplane::resp::Limits;
use dinomo_pmem::{ChainId, PoolConfig};

use crate::info::{DinomoStats, parse_info};
use crate::target::{Command, Connection, Reply, ServerSettings, Target, TargetError};

/// Size of the sparse pool file (only what is written takes space).
pub const POOL_BYTES: u64 = 16 << 30;
/// Cache budget of the node when none is given.
pub const CACHE_BYTES_DEFAULT: u64 = 256 << 20;
/// How long the stats wait for every core to publish fresh counters.
const STATS_SETTLE: Duration = Duration::from_millis(60);

/// A running embedded node; dropping it stops the node and removes the pool file.
pub struct EmbeddedTarget {
    store: StoreHandle,
    /// Present until the target drops.
    server: Option<AllInOne>,
    dir: PathBuf,
    label: String,
}

fn failed(reason: impl ToString) -> TargetError {
    TargetError::SettingUnsupported {
        setting: "embedded node",
        reason: reason.to_string(),
    }
}

/// Starts an embedded node with `settings`.
pub fn start(settings: &ServerSettings) -> Result<EmbeddedTarget, TargetError> {
    let dir = std::env::temp_dir().join(format!(
        "dinomo-bench-{}-{:?}",
        std::process::id(),
        std::time::Instant::now()
    ));
    std::fs::create_dir_all(&dir).map_err(failed)?;
    let durability = settings.durability.unwrap_or(Durability::Memory);
    let rtt = settings.rtt_delay.unwrap_or(Duration::ZERO);
    let cores = settings.cores.unwrap_or(1).max(1);
    let cache_bytes = settings.cache_bytes.unwrap_or(CACHE_BYTES_DEFAULT);
    let policy = settings.cache_policy.unwrap_or(Policy::Dac);
    let kn = KnOptions {
        kn: KnId(1),
        host: "127.0.0.1".into(),
        base_port: 0,
        cores,
        first_chain: 0,
        engine: EngineConfig {
            cache_policy: policy,
            cache_bytes: (cache_bytes / cores as u64) as usize,
            ..EngineConfig::new(ChainId(0), dinomo_pmem::Epoch(1))
        },
        pin: true,
        sqpoll: false,
        requirepass: None,
        limits: Limits::default(),
        connections_max: 1,
        listen: false,
    };
    let started = AllInOne::start(AllInOneConfig {
        pool: dir.join("pool"),
        create: CreateMode::Create {
            config: PoolConfig::with_size(POOL_BYTES),
            overwrite: false,
        },
        durability,
        memnode: NodeOptions::default(),
        rtt,
        kn,
    });
    let server = match started {
        Ok(server) => server,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(failed(e));
        }
    };
    let store = StoreHandle::new(server.node());
    let label = format!(
        "embedded (cores {cores}, cache {cache_bytes} bytes {policy:?}, rtt {rtt:?}, durability {})",
        durability.name()
    );
    Ok(EmbeddedTarget {
        store,
        server: Some(server),
        dir,
        label,
    })
}

impl Drop for EmbeddedTarget {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Target for EmbeddedTarget {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn connect(&self, in_flight_max: usize) -> Result<Box<dyn Connection + '_>, TargetError> {
        Ok(Box::new(EmbeddedConnection {
            store: self.store.clone(),
            pending: VecDeque::new(),
            max: in_flight_max.max(1),
        }))
    }

    fn stats(&self) -> Result<Option<DinomoStats>, TargetError> {
        // Every core publishes its counters at least once per snapshot interval.
        std::thread::sleep(STATS_SETTLE);
        let text = self.store.info(&["dinomo"]);
        let info = parse_info(&text).map_err(|source| TargetError::Info {
            addr: "embedded".into(),
            source,
        })?;
        DinomoStats::from_info(&info).map_err(|source| TargetError::Info {
            addr: "embedded".into(),
            source,
        })
    }

    fn server_version(&self) -> Result<Option<String>, TargetError> {
        Ok(Some(format!(
            "dinomo {} (embedded)",
            env!("CARGO_PKG_VERSION")
        )))
    }
}

/// One bench connection: requests go straight to the owning core's queue.
struct EmbeddedConnection {
    store: StoreHandle,
    pending: VecDeque<Receiver<KnReply>>,
    max: usize,
}

impl Connection for EmbeddedConnection {
    fn send(&mut self, command: Command<'_>) -> Result<(), TargetError> {
        if self.pending.len() >= self.max {
            return Err(TargetError::InFlightFull {
                in_flight: self.pending.len(),
            });
        }
        let cmd = match command {
            Command::Get { key } => KnCommand::Get { key: key.to_vec() },
            Command::Set { key, value } => KnCommand::Set {
                key: key.to_vec(),
                value: value.to_vec(),
                cond: SetCond::Always,
                get: false,
            },
        };
        let rx = self.store.submit(cmd).map_err(failed)?;
        self.pending.push_back(rx);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TargetError> {
        Ok(())
    }

    fn recv(&mut self, replies: &mut Vec<Reply>, max: usize) -> Result<usize, TargetError> {
        let mut n = 0;
        while n < max {
            let Some(front) = self.pending.front() else {
                break;
            };
            // Block for the first reply only; take the rest that are already there.
            let reply = if n == 0 {
                self.store.wait(front)
            } else {
                match front.try_recv() {
                    Ok(KnReply::Error(e)) => Err(e.into()),
                    Ok(r) => Ok(r),
                    Err(_) => break,
                }
            };
            self.pending.pop_front();
            replies.push(match reply {
                Ok(KnReply::Value(Some(v))) => Reply::Value { len: v.len() },
                Ok(KnReply::Value(None)) | Ok(KnReply::NotSet) => Reply::Nil,
                Ok(KnReply::Ok) | Ok(KnReply::Int(_)) => Reply::Done,
                Ok(KnReply::Error(e)) => Reply::Error(e.to_string()),
                Ok(KnReply::Moved(slot)) => Reply::Error(format!("slot {slot} moved")),
                Err(e) => Reply::Error(e.to_string()),
            });
            n += 1;
        }
        Ok(n)
    }

    fn in_flight(&self) -> usize {
        self.pending.len()
    }
}
