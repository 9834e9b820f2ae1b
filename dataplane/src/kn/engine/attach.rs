//! Start-up: [`Engine::attach`] says hello as the node's incarnation, reads the pool's layout,
//! attaches to the chain (the MN checks that the cluster map gives it to this incarnation, merges
//! what an earlier writer of the chain left and answers where to append), and reads the index's
//! table headers. Blocking, through the MN client with its deadline: this is the core's
//! start-up, not its loop.

use dinomo_index::probe::decode_root;
use dinomo_pmem::constants::SUPERBLOCK_LEN;
use dinomo_pmem::index_format::{TABLE_HEADER_LEN, TableHeader};
use dinomo_pmem::{Layout, PoolOffset, Staging};

use super::chain::Chain;
use super::commit::GroupCommit;
use super::read::MissCost;
use super::requests::Requests;
use super::table::{ROOT_INDEX_WORDS_LEN, TableCache};
use super::{Engine, EngineConfig, StartError};
use crate::cache::Cache;
use crate::fabric::QueuePair;
use crate::kn::constants::POLL_BATCH;
use crate::kn::routing::SlotSet;
use crate::kn::stats::EngineStats;
use crate::mn::client::MnClient;

impl Engine {
    /// Starts an engine on `qp`, which must be idle.
    pub fn attach(mut qp: Box<dyn QueuePair>, cfg: EngineConfig) -> Result<Engine, StartError> {
        let mut client = MnClient::new(&mut *qp);
        client.hello(cfg.incarnation)?;
        let region = client.region_len();
        let superblock = client.read(PoolOffset(0), SUPERBLOCK_LEN as u32)?;
        let layout = Layout::decode(&superblock, region)?;
        let attached = client.attach(cfg.chain)?;
        let root = client.read(PoolOffset(layout.root_off), ROOT_INDEX_WORDS_LEN)?;
        let (table_off, next_off) =
            decode_root(&root).ok_or_else(|| StartError::Unexpected("a short root".into()))?;
        let mut header = |off: u64| -> Result<TableHeader, StartError> {
            let bytes = client.read(PoolOffset(off), TABLE_HEADER_LEN as u32)?;
            TableHeader::decode(&bytes)
                .ok_or_else(|| StartError::Unexpected(format!("no table header at {off:#x}")))
        };
        let table = header(table_off)?;
        let next_table = if next_off != 0 && next_off != table_off {
            Some(header(next_off)?)
        } else {
            None
        };
        let staging = Staging::new(
            &layout,
            attached.head,
            attached.used,
            cfg.batch_bytes_max,
            true,
        );
        Ok(Engine {
            qp,
            layout,
            boot: attached.boot,
            cache: Cache::new(cfg.cache_policy, cfg.cache_bytes),
            requests: Requests::default(),
            table: TableCache::new(table, next_table),
            batch: GroupCommit::new(),
            chain: Chain::new(staging, attached.next_seq),
            failed: None,
            done: Vec::new(),
            completions: Vec::with_capacity(POLL_BATCH),
            stats: EngineStats::default(),
            miss_cost: MissCost::default(),
            owned: SlotSet::all(),
            cfg,
        })
    }
}
