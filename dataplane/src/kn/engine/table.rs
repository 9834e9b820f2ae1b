//! The cached index table header and its refresh.
//!
//! A probe needs the current table's header (and, during a resize, the next table's). The engine
//! caches both after start-up; a probe that finds its header stale (a version tag it does not
//! know, or a MIGRATED pair) drops the cache, and the first request that needs a header starts
//! one refresh — a READ of the root's index words, then one doorbell with a READ of each named
//! header — while every request that needs a header waits for it. A header that does not decode
//! (the root moved on while it was read) starts the refresh again.

use dinomo_index::probe::decode_root;
use dinomo_pmem::PoolOffset;
use dinomo_pmem::index_format::{TABLE_HEADER_LEN, TableHeader};

use super::requests::ReqId;
use super::{Engine, WrKind, wr};
use crate::fabric::Verb;

/// Bytes of the root area a refresh reads: the current and the next table's offsets.
pub(super) const ROOT_INDEX_WORDS_LEN: u32 = 16;

#[derive(Debug)]
enum Refresh {
    Idle,
    Root,
    Headers {
        next: u64,
        got: [Option<TableHeader>; 2],
        outstanding: usize,
    },
}

/// The cached table headers, the refresh in flight and the requests waiting for it.
#[derive(Debug)]
pub(super) struct TableCache {
    current: Option<TableHeader>,
    next: Option<TableHeader>,
    refresh: Refresh,
    /// Requests waiting for a header.
    pub(super) waiting: Vec<ReqId>,
}

impl TableCache {
    pub(super) fn new(current: TableHeader, next: Option<TableHeader>) -> TableCache {
        TableCache {
            current: Some(current),
            next,
            refresh: Refresh::Idle,
            waiting: Vec::new(),
        }
    }

    /// The header a probe uses: the next table's during a resize if asked for and known.
    pub(super) fn for_probe(&self, use_next: bool) -> Option<TableHeader> {
        if use_next {
            self.next.or(self.current)
        } else {
            self.current
        }
    }

    /// Drops the cached current header: the next probe waits for a refresh.
    pub(super) fn invalidate(&mut self) {
        self.current = None;
    }

    /// A root or header READ completed without bytes: the refresh is over (the next probe that
    /// needs a header starts another).
    pub(super) fn abandon(&mut self) {
        self.refresh = Refresh::Idle;
    }
}

impl Engine {
    pub(super) fn start_refresh(&mut self) {
        if !matches!(self.table.refresh, Refresh::Idle) {
            return;
        }
        self.stats.table_refreshes += 1;
        self.table.refresh = Refresh::Root;
        let verb = Verb::Read {
            remote: PoolOffset(self.layout.root_off),
            len: ROOT_INDEX_WORDS_LEN,
        };
        if let Err(e) = self.qp.post(wr(WrKind::Root, 0), verb) {
            self.fail_engine(format!("posting a root READ: {e}"));
        }
    }

    pub(super) fn on_root(&mut self, bytes: &[u8]) {
        let Some((table, next)) = decode_root(bytes) else {
            self.table.refresh = Refresh::Idle;
            self.start_refresh();
            return;
        };
        let next = if next == table { 0 } else { next };
        let mut batch = vec![(
            wr(WrKind::Header, 0),
            Verb::Read {
                remote: PoolOffset(table),
                len: TABLE_HEADER_LEN as u32,
            },
        )];
        if next != 0 {
            batch.push((
                wr(WrKind::Header, 1),
                Verb::Read {
                    remote: PoolOffset(next),
                    len: TABLE_HEADER_LEN as u32,
                },
            ));
        }
        let outstanding = batch.len();
        self.table.refresh = Refresh::Headers {
            next,
            got: [None, None],
            outstanding,
        };
        if let Err(e) = self.qp.post_batch(batch) {
            self.fail_engine(format!("posting header READs: {e}"));
        }
    }

    pub(super) fn on_header(&mut self, which: usize, bytes: &[u8]) {
        let Refresh::Headers {
            got,
            outstanding,
            next,
        } = &mut self.table.refresh
        else {
            return;
        };
        got[which] = TableHeader::decode(bytes);
        *outstanding -= 1;
        if *outstanding > 0 {
            return;
        }
        let (current, next_header, has_next) = (got[0], got[1], *next != 0);
        self.table.refresh = Refresh::Idle;
        let Some(current) = current else {
            // A header that does not decode: the root moved on while we read it. Again.
            self.start_refresh();
            return;
        };
        if has_next && next_header.is_none() {
            self.start_refresh();
            return;
        }
        self.table.current = Some(current);
        self.table.next = next_header;
        for id in std::mem::take(&mut self.table.waiting) {
            if self.requests.is_live(id) {
                self.start_probe(id);
            }
        }
    }
}
