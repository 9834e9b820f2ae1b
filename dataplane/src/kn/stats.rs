//! Counters of a KN core: operations, round trips, verbs and bytes by cache outcome — the
//! portable measure of the design (DESIGN.md §7).

use crate::fabric::VerbKind;

/// How a request was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// From the value cache: no round trip.
    Value = 0,
    /// Through a cached shortcut: one READ of the entry.
    Shortcut = 1,
    /// From this core's unmerged log: no round trip.
    Log = 2,
    /// Through the index: a bucket READ and an entry READ (more on overflow or staleness).
    Miss = 3,
    /// A write, committed in a batch.
    Write = 4,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Value,
        Outcome::Shortcut,
        Outcome::Log,
        Outcome::Miss,
        Outcome::Write,
    ];

    /// The read outcomes, whose counts add up to the lookups.
    pub const READS: [Outcome; 4] = [
        Outcome::Value,
        Outcome::Shortcut,
        Outcome::Log,
        Outcome::Miss,
    ];

    /// The suffix of the outcome's `INFO dinomo` fields and its key in reports.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Value => "value",
            Outcome::Shortcut => "shortcut",
            Outcome::Log => "log",
            Outcome::Miss => "miss",
            Outcome::Write => "write",
        }
    }

    /// The `INFO dinomo` field that counts the requests of this outcome.
    pub fn count_field(self) -> &'static str {
        match self {
            Outcome::Value => "hits_value",
            Outcome::Shortcut => "hits_shortcut",
            Outcome::Log => "hits_log",
            Outcome::Miss => "misses",
            Outcome::Write => "writes",
        }
    }
}

/// A core's counters. Writes share their batch's verbs and round trip: each write is charged its
/// share, so per-operation figures stay exact on average.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineStats {
    /// Operations by outcome.
    pub ops: [u64; 5],
    /// Dependent round trips by outcome (for writes: batches).
    pub round_trips: [u64; 5],
    /// Verbs by outcome and kind.
    pub verbs: [[u64; 5]; 5],
    /// Payload bytes by outcome and kind.
    pub bytes: [[u64; 5]; 5],
    pub gets: u64,
    pub sets: u64,
    pub dels: u64,
    pub exists: u64,
    /// Conditional writes that did not write (NX/XX unmet, DEL of an absent key).
    pub no_ops: u64,
    /// Requests for a slot this core does not own, answered with a redirect.
    pub moved: u64,
    pub batches: u64,
    pub batch_entries: u64,
    pub batch_bytes: u64,
    pub block_switches: u64,
    pub spare_rpcs: u64,
    pub merge_polls: u64,
    pub sealed_released: u64,
    pub backpressure_waits: u64,
    pub table_refreshes: u64,
    pub lookup_restarts: u64,
    pub shortcut_stale: u64,
    pub errors: u64,
}

impl EngineStats {
    pub fn count_verb(&mut self, outcome: Outcome, kind: VerbKind, bytes: u64) {
        self.verbs[outcome as usize][kind as usize] += 1;
        self.bytes[outcome as usize][kind as usize] += bytes;
    }

    /// Adds another core's counters.
    pub fn merge(&mut self, other: &EngineStats) {
        for i in 0..5 {
            self.ops[i] += other.ops[i];
            self.round_trips[i] += other.round_trips[i];
            for k in 0..5 {
                self.verbs[i][k] += other.verbs[i][k];
                self.bytes[i][k] += other.bytes[i][k];
            }
        }
        self.gets += other.gets;
        self.sets += other.sets;
        self.dels += other.dels;
        self.exists += other.exists;
        self.no_ops += other.no_ops;
        self.moved += other.moved;
        self.batches += other.batches;
        self.batch_entries += other.batch_entries;
        self.batch_bytes += other.batch_bytes;
        self.block_switches += other.block_switches;
        self.spare_rpcs += other.spare_rpcs;
        self.merge_polls += other.merge_polls;
        self.sealed_released += other.sealed_released;
        self.backpressure_waits += other.backpressure_waits;
        self.table_refreshes += other.table_refreshes;
        self.lookup_restarts += other.lookup_restarts;
        self.shortcut_stale += other.shortcut_stale;
        self.errors += other.errors;
    }

    /// Total operations.
    pub fn total_ops(&self) -> u64 {
        self.ops.iter().sum()
    }
    /// Total verbs of one kind.
    pub fn total_verbs(&self, kind: VerbKind) -> u64 {
        self.verbs.iter().map(|v| v[kind as usize]).sum()
    }
    /// Total bytes of one kind.
    pub fn total_bytes(&self, kind: VerbKind) -> u64 {
        self.bytes.iter().map(|v| v[kind as usize]).sum()
    }
}
