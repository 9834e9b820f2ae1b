//! Per-core disaggregated adaptive cache (DAC): values and shortcuts in one byte budget.
//!
//! A KN worker core owns its slots outright, so it is the only reader and writer of its keys and
//! caches them without locks or coherence traffic. For a key the cache holds either the **value**
//! (a hit costs no round trip) or only a **shortcut**, the pool location of the key's newest log
//! entry (a hit costs one remote READ instead of the index probe of a miss). Under
//! [`Policy::Dac`] values are kept in recency order (LRU) and shortcuts in frequency order (LFU,
//! new entries at frequency 1), and both draw on one byte budget:
//!
//! - A new key becomes a value if it fits in the free budget, else a shortcut if that fits; when
//!   neither fits, the least recently used values are demoted to shortcuts (their accumulated hits
//!   become their frequency) and then the least frequent shortcuts are evicted until the new key
//!   fits as a shortcut. Once the cache is full, new keys must earn their way into the value cache.
//!   A value no longer than a shortcut is the exception: demoting it would free nothing, so it is
//!   evicted instead, and a new one is made room for as a value.
//! - A write to a key cached as a value replaces the value; if the value grew, others make room
//!   as for a new key, and if they cannot, the key is placed again as a new key.
//! - A shortcut is promoted to a value when the value fits in the free budget, or when
//!   `frequency(key) > miss_cost × Σ frequency(victims)`, the victims being the least frequent
//!   shortcuts that must be evicted to make room. Promoting saves one READ per future hit on the
//!   key; each victim's future hits turn into misses that cost `miss_cost` round trips each, so a
//!   key is promoted only when its reads outweigh what the victims' reads would then cost. The
//!   worker measures `miss_cost` (round trips per miss) and feeds it in with
//!   [`Cache::set_miss_cost`]: a deeper index makes misses dearer and shortcuts more valuable.
//!
//! Only reads raise a key's hit count, because only reads benefit from caching: a write goes to
//! the log whatever the cache holds.
//!
//! The same code offers the baselines: [`Policy::ValueOnly`] (an LRU of values, a key whose value
//! does not fit is not cached), [`Policy::ShortcutOnly`] (an LRU of shortcuts) and
//! [`Policy::None`] (nothing is cached, every lookup misses). Their names on command lines and in
//! `INFO` (`dac`, `value`, `shortcut`, `none`) are the policy's [`Named`] implementation.
//!
//! Costs are real bytes, not nominal sizes: a value costs its key and value length plus
//! [`ENTRY_OVERHEAD_BYTES`], a shortcut its key length plus [`SHORTCUT_BYTES`] plus the same
//! overhead (see [`value_cost_bytes`] and [`shortcut_cost_bytes`]).
//!
//! Invariants, kept by every public method:
//! - `used_bytes` is the sum of the costs of the cached entries and never exceeds the budget, so
//!   at most `budget / ENTRY_OVERHEAD_BYTES` entries exist and memory stays within the budget
//!   (apart from the growth slack described at [`ENTRY_OVERHEAD_BYTES`]). A value or key that
//!   cannot fit in the whole budget is simply not cached.
//! - A key is cached at most once: as a value, linked into the value LRU list, or as a shortcut,
//!   in the shortcut order of the policy; never both. `ValueOnly` holds no shortcuts,
//!   `ShortcutOnly` no values, `None` nothing.
//! - A cached value is the last value given for its key by [`Cache::insert`] or
//!   [`Cache::shortcut_filled`], and a cached shortcut the last shortcut given for it; a value is
//!   never taken from a fill whose shortcut is no longer the cached one, so a read that raced a
//!   newer write cannot put a stale value in the cache.
//! - Every operation does a bounded amount of work: at most [`PROMOTION_EVICTIONS_MAX`] victims
//!   are examined for a promotion and at most [`MAKE_ROOM_STEPS_MAX`] demotions or evictions are
//!   made to place one key. Value lists cost O(1) per operation; the shortcut frequency order is
//!   a B-tree, O(log n), because a demoted value enters it at an arbitrary frequency, which a
//!   constant-time frequency-bucket list cannot place without a search; a shortcut hit also pays
//!   a remote READ, next to which the B-tree step is noise.

#![forbid(unsafe_code)]

mod slab;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::mem::size_of;
use std::sync::Arc;

use crate::config::{Named, display_and_parse_by_name};
use slab::{List, NIL, Node, Slab};

/// The hash map a core keeps per key (cache index, in-flight and unmerged keys): foldhash, seeded
/// at random per map, so that client-chosen keys cannot aim at one bucket, and several times
/// cheaper than SipHash on short keys.
pub type KeyMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Bytes charged for a shortcut's payload: the pool offset and length of the log entry, padded as
/// they are stored.
pub const SHORTCUT_BYTES: usize = 16;

/// Bytes charged for every cached entry on top of its key and payload: the most bookkeeping
/// either kind of entry costs. Both have a slab slot (72 bytes), a hash-map slot at the map's
/// highest load (a key pointer and an index padded to 24 bytes plus a control byte, at 7/8
/// occupancy: about 29), the reference counts of the shared key block (16) and the allocator's
/// header and rounding of that block (up to 24). A value adds the header and rounding of its value
/// block (up to 24), about 165 bytes in all; a shortcut adds its place in the frequency order (a
/// 20-byte key and index in B-tree nodes that may be under half full: about 45), about 186 in
/// all. Growth slack of the vectors and tables, at most twice their size until the cache stops
/// growing, is not charged.
pub const ENTRY_OVERHEAD_BYTES: usize = 192;

/// Most shortcuts a promotion may evict. If freeing room for the value would take more, the key
/// stays a shortcut. This bounds the work of a promotion and keeps one large value from wiping
/// out a whole population of shortcuts in one step.
pub const PROMOTION_EVICTIONS_MAX: usize = 64;

/// Most demotions and evictions made to place one key (or to let one value grow). A key that
/// would need more is not cached (or, for a growing value, is placed again as a new key).
pub const MAKE_ROOM_STEPS_MAX: usize = 64;

/// Round trips a miss is assumed to cost until the worker measures it: one READ of the index
/// bucket and one READ of the log entry, once the index's table header is cached.
pub const MISS_COST_ROUND_TRIPS_DEFAULT: f64 = 2.0;

/// Largest budget a cache accepts; larger ones are clamped. Every entry costs at least
/// [`ENTRY_OVERHEAD_BYTES`], so this keeps the number of entries below `u32::MAX`, the slab's
/// index space.
pub const BUDGET_BYTES_MAX: usize = ((u32::MAX - 1) as usize).saturating_mul(ENTRY_OVERHEAD_BYTES);

const _: () = {
    assert!(SHORTCUT_BYTES >= size_of::<Shortcut>());
    // The fixed-size parts of the overhead: slab slot, map slot (key pointer and index), key
    // reference counts, and the larger of a frequency-order entry and a value block's allocator
    // header and rounding, plus the key block's.
    assert!(
        slab::SLOT_BYTES
            + size_of::<(Arc<[u8]>, u32)>()
            + 2 * size_of::<usize>()
            + 24
            + size_of::<((u64, u64), u32)>()
            <= ENTRY_OVERHEAD_BYTES
    );
    assert!(PROMOTION_EVICTIONS_MAX >= 1);
    assert!(MAKE_ROOM_STEPS_MAX >= 1);
    assert!(MISS_COST_ROUND_TRIPS_DEFAULT >= 0.0);
};

/// Which entries a [`Cache`] keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Disaggregated adaptive caching: values (LRU) and shortcuts (LFU) share the budget, with
    /// promotion and demotion between them.
    Dac,
    /// Values only, in LRU order; a key whose value does not fit is not cached.
    ValueOnly,
    /// Shortcuts only, in LRU order.
    ShortcutOnly,
    /// No caching: every lookup misses.
    None,
}

impl Named for Policy {
    const WHAT: &'static str = "cache policy";
    const ALL: &'static [Policy] = &[
        Policy::Dac,
        Policy::ValueOnly,
        Policy::ShortcutOnly,
        Policy::None,
    ];

    fn name(self) -> &'static str {
        match self {
            Policy::Dac => "dac",
            Policy::ValueOnly => "value",
            Policy::ShortcutOnly => "shortcut",
            Policy::None => "none",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Policy::Dac => {
                "disaggregated adaptive caching: values (LRU) and shortcuts (LFU) in one budget"
            }
            Policy::ValueOnly => "values only",
            Policy::ShortcutOnly => "shortcuts only",
            Policy::None => "no cache",
        }
    }
}

display_and_parse_by_name!(Policy);

/// Where a key's newest log entry lives in the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shortcut {
    /// Pool offset of the log entry's first byte.
    pub entry_offset: u64,
    /// Length of the whole log entry, header included, so one READ fetches it.
    pub entry_len: u32,
}

/// The outcome of [`Cache::get`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The value is cached: no round trip. The shortcut comes along for callers that validate
    /// or rewrite the entry.
    Value { value: &'a [u8], shortcut: Shortcut },
    /// Only the shortcut is cached: one READ of the entry. Report the value read with
    /// [`Cache::shortcut_filled`].
    Shortcut(Shortcut),
    /// Not cached: go through the index, then [`Cache::insert`] the result.
    Miss,
}

/// Counters and gauges of a [`Cache`]. Counters accumulate from construction; [`Cache::clear`]
/// and [`Cache::retain`] change the gauges only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered with a value.
    pub value_hits: u64,
    /// Lookups answered with a shortcut.
    pub shortcut_hits: u64,
    /// Lookups answered with nothing.
    pub misses: u64,
    /// Shortcuts turned into values.
    pub promotions: u64,
    /// Values turned into shortcuts to make room.
    pub demotions: u64,
    /// Entries dropped to make room, promotion victims included. Explicit removals are not
    /// evictions.
    pub evictions: u64,
    /// Sum of the costs of the cached entries.
    pub used_bytes: usize,
    /// The byte budget.
    pub budget_bytes: usize,
    /// Keys cached as values.
    pub values: usize,
    /// Keys cached as shortcuts.
    pub shortcuts: usize,
}

/// Bytes a key cached as a value is charged.
pub const fn value_cost_bytes(key_len: usize, value_len: usize) -> usize {
    key_len
        .saturating_add(value_len)
        .saturating_add(ENTRY_OVERHEAD_BYTES)
}

/// Bytes a key cached as a shortcut is charged.
pub const fn shortcut_cost_bytes(key_len: usize) -> usize {
    key_len
        .saturating_add(SHORTCUT_BYTES)
        .saturating_add(ENTRY_OVERHEAD_BYTES)
}

/// The cache of one worker core. It is `Send`, so it can be built and then moved onto its core,
/// and has no interior locking: the core's loop owns it.
pub struct Cache {
    policy: Policy,
    budget_bytes: usize,
    used_bytes: usize,
    miss_cost: f64,
    /// Finds a key's entry. Keys are shared with the entries, so their bytes are stored once.
    map: KeyMap<Arc<[u8]>, u32>,
    slab: Slab,
    /// Values, most recently used first.
    values: List,
    /// Shortcuts under `ShortcutOnly`, most recently used first.
    shortcut_recency: List,
    /// Shortcuts under `Dac`, keyed by (frequency, arrival), so the first entry is the one to
    /// evict: least frequent, and oldest among equals.
    shortcut_frequency: BTreeMap<(u64, u64), u32>,
    shortcuts: usize,
    /// Next arrival number for the frequency order.
    arrival_next: u64,
    /// Scratch list of promotion victims, allocated once so a promotion does not allocate.
    victims: Vec<u32>,
    stats: CacheStats,
}

impl Cache {
    /// An empty cache that keeps `policy`'s entries within `budget_bytes` (clamped to
    /// [`BUDGET_BYTES_MAX`]).
    pub fn new(policy: Policy, budget_bytes: usize) -> Cache {
        let budget_bytes = budget_bytes.min(BUDGET_BYTES_MAX);
        Cache {
            policy,
            budget_bytes,
            used_bytes: 0,
            miss_cost: MISS_COST_ROUND_TRIPS_DEFAULT,
            map: KeyMap::default(),
            slab: Slab::new(),
            values: List::new(),
            shortcut_recency: List::new(),
            shortcut_frequency: BTreeMap::new(),
            shortcuts: 0,
            arrival_next: 0,
            victims: Vec::with_capacity(PROMOTION_EVICTIONS_MAX),
            stats: CacheStats {
                budget_bytes,
                ..CacheStats::default()
            },
        }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    pub fn budget_bytes(&self) -> usize {
        self.budget_bytes
    }

    /// The round trips a miss is currently assumed to cost.
    pub fn miss_cost(&self) -> f64 {
        self.miss_cost
    }

    /// Sets the round trips a miss costs, as measured by the worker over its last period. A
    /// negative or non-finite measurement (a period without misses gives 0/0) is ignored, keeping
    /// the previous estimate.
    pub fn set_miss_cost(&mut self, round_trips: f64) {
        if round_trips.is_finite() && round_trips >= 0.0 {
            self.miss_cost = round_trips;
        }
    }

    /// Number of cached keys, values and shortcuts together.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            used_bytes: self.used_bytes,
            budget_bytes: self.budget_bytes,
            values: self.values.len(),
            shortcuts: self.shortcuts,
            ..self.stats
        }
    }

    /// Looks `key` up, counts the hit or miss and records the access: a value moves to the front
    /// of the recency order, a shortcut gains one frequency (or recency under `ShortcutOnly`).
    pub fn get(&mut self, key: &[u8]) -> Lookup<'_> {
        let Some(&index) = self.map.get(key) else {
            self.stats.misses += 1;
            return Lookup::Miss;
        };
        if self.slab.node(index).value.is_some() {
            self.stats.value_hits += 1;
            self.values.move_to_front(&mut self.slab, index);
            let node = self.slab.node_mut(index);
            node.hits = node.hits.saturating_add(1);
        } else {
            self.stats.shortcut_hits += 1;
            self.shortcut_hit(index);
        }
        Self::lookup_of(self.slab.node(index))
    }

    /// The cached value of `key`, counted and recorded as a value hit; `None`, with nothing
    /// counted or recorded, when the key is cached only as a shortcut or not at all.
    pub fn get_value(&mut self, key: &[u8]) -> Option<&[u8]> {
        if !matches!(self.peek(key), Lookup::Value { .. }) {
            return None;
        }
        match self.get(key) {
            Lookup::Value { value, .. } => Some(value),
            _ => None,
        }
    }

    /// Looks `key` up without counting or recording the access.
    pub fn peek(&self, key: &[u8]) -> Lookup<'_> {
        match self.map.get(key) {
            Some(&index) => Self::lookup_of(self.slab.node(index)),
            None => Lookup::Miss,
        }
    }

    /// Reports the value read through a shortcut hit. Under `Dac` this is where the key may be
    /// promoted to a value (see the module documentation). Nothing happens unless the key is still
    /// cached as a shortcut to exactly `shortcut`: if a newer write moved the shortcut while the
    /// READ was in flight, `value` is stale and must not be cached.
    pub fn shortcut_filled(&mut self, key: &[u8], value: &[u8], shortcut: Shortcut) {
        if self.policy != Policy::Dac {
            return;
        }
        let Some(&index) = self.map.get(key) else {
            return;
        };
        let node = self.slab.node(index);
        if node.value.is_none() && node.shortcut == shortcut {
            self.try_promote(index, value);
        }
    }

    /// Caches `value`, whose newest log entry is at `shortcut`, for `key`: after a write is
    /// durable, or after a miss was filled from the index. A cached value is replaced; a cached
    /// shortcut is promoted under `Dac` if the promotion rule allows, else refreshed; a new key
    /// is placed as the policy says, demoting or evicting others if the budget is full.
    pub fn insert(&mut self, key: &[u8], value: &[u8], shortcut: Shortcut) {
        if self.policy == Policy::None {
            return;
        }
        match self.map.get(key) {
            Some(&index) if self.slab.node(index).value.is_some() => {
                self.replace_value(index, key, value, shortcut);
            }
            Some(&index) => {
                self.slab.node_mut(index).shortcut = shortcut;
                match self.policy {
                    Policy::Dac => {
                        self.try_promote(index, value);
                    }
                    Policy::ShortcutOnly => {
                        self.shortcut_recency.move_to_front(&mut self.slab, index);
                    }
                    Policy::ValueOnly | Policy::None => {
                        unreachable!("{:?} caches no shortcuts", self.policy)
                    }
                }
            }
            None => self.insert_new(key, value, shortcut, 1),
        }
    }

    /// Drops `key` from the cache, for example after a delete or when the key became replicated.
    /// Returns whether it was cached.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        match self.map.get(key) {
            Some(&index) => {
                self.drop_entry(index);
                true
            }
            None => false,
        }
    }

    /// Drops every entry. The counters are kept.
    pub fn clear(&mut self) {
        self.map.clear();
        self.slab.clear();
        self.values.clear();
        self.shortcut_recency.clear();
        self.shortcut_frequency.clear();
        self.shortcuts = 0;
        self.used_bytes = 0;
    }

    /// Keeps only the keys for which `keep` returns true, for example to drop the keys of slots
    /// that moved to another owner. Costs one pass over the cached entries.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8]) -> bool) {
        for index in 0..self.slab.end_index() {
            if let Some(node) = self.slab.get(index)
                && !keep(&node.key)
            {
                self.drop_entry(index);
            }
        }
    }

    fn lookup_of(node: &Node) -> Lookup<'_> {
        match &node.value {
            Some(value) => Lookup::Value {
                value,
                shortcut: node.shortcut,
            },
            None => Lookup::Shortcut(node.shortcut),
        }
    }

    fn free_bytes(&self) -> usize {
        self.budget_bytes - self.used_bytes
    }

    fn cost_of(node: &Node) -> usize {
        match &node.value {
            Some(value) => value_cost_bytes(node.key.len(), value.len()),
            None => shortcut_cost_bytes(node.key.len()),
        }
    }

    /// Places a key that is not cached. `hits` is the hit count it starts with.
    fn insert_new(&mut self, key: &[u8], value: &[u8], shortcut: Shortcut, hits: u64) {
        let value_cost = value_cost_bytes(key.len(), value.len());
        let shortcut_cost = shortcut_cost_bytes(key.len());
        let as_value = match self.policy {
            Policy::None => return,
            Policy::ValueOnly => {
                if !self.make_room(value_cost, NIL) {
                    return;
                }
                true
            }
            Policy::ShortcutOnly => {
                if !self.make_room(shortcut_cost, NIL) {
                    return;
                }
                false
            }
            Policy::Dac => {
                if value_cost <= self.free_bytes() {
                    true
                } else if value.len() <= SHORTCUT_BYTES {
                    // A value this small costs no more than its shortcut and saves a READ more,
                    // so it is made room for as a value rather than entering as a shortcut.
                    if !self.make_room(value_cost, NIL) {
                        return;
                    }
                    true
                } else {
                    if !self.make_room(shortcut_cost, NIL) {
                        return;
                    }
                    false
                }
            }
        };
        let value = as_value.then(|| Box::<[u8]>::from(value));
        let mut node = Node::new(Arc::from(key), value, shortcut);
        node.hits = hits;
        let cost = Self::cost_of(&node);
        debug_assert!(cost <= self.free_bytes());
        let key = Arc::clone(&node.key);
        let index = self.slab.insert(node);
        self.map.insert(key, index);
        self.used_bytes += cost;
        if as_value {
            self.values.push_front(&mut self.slab, index);
        } else {
            self.shortcut_attach(index);
        }
    }

    /// Replaces the cached value at `index` (a write to a key cached as a value). The key becomes
    /// the most recently used value; if the new value is larger, others make room as for a new
    /// key. If they cannot, the entry is dropped and `key` is placed again as a new key.
    fn replace_value(&mut self, index: u32, key: &[u8], value: &[u8], shortcut: Shortcut) {
        self.values.move_to_front(&mut self.slab, index);
        let node = self.slab.node(index);
        let old_len = node.value.as_ref().map_or(0, |old| old.len());
        let growth = value.len().saturating_sub(old_len);
        // Checked first so that no other entry is displaced for a value that can never fit.
        let fits_budget = value_cost_bytes(key.len(), value.len()) <= self.budget_bytes;
        if growth > 0 && !(fits_budget && self.make_room(growth, index)) {
            let hits = self.slab.node(index).hits;
            self.drop_entry(index);
            self.insert_new(key, value, shortcut, hits);
            return;
        }
        let node = self.slab.node_mut(index);
        match &mut node.value {
            // Writes usually keep a key's value length, so the block is reused.
            Some(old) if old.len() == value.len() => old.copy_from_slice(value),
            slot => *slot = Some(Box::from(value)),
        }
        node.shortcut = shortcut;
        self.used_bytes = self.used_bytes - old_len + value.len();
    }

    /// Frees budget until `needed` bytes are free, demoting or evicting at most
    /// [`MAKE_ROOM_STEPS_MAX`] entries other than `protect` (or [`NIL`]). Under `Dac` the least
    /// recently used values are demoted first and the least frequent shortcuts evicted after;
    /// the baselines evict from their single recency list. Returns whether the room is there.
    fn make_room(&mut self, needed: usize, protect: u32) -> bool {
        if needed > self.budget_bytes {
            return false;
        }
        for _ in 0..MAKE_ROOM_STEPS_MAX {
            if needed <= self.free_bytes() {
                return true;
            }
            match self.policy {
                Policy::Dac => {
                    if let Some(index) = Self::tail_except(&self.values, &self.slab, protect) {
                        self.demote(index);
                    } else if let Some(index) = self.least_frequent_shortcut(protect) {
                        self.evict(index);
                    } else {
                        return false;
                    }
                }
                Policy::ValueOnly | Policy::ShortcutOnly => {
                    let list = if self.policy == Policy::ValueOnly {
                        &self.values
                    } else {
                        &self.shortcut_recency
                    };
                    match Self::tail_except(list, &self.slab, protect) {
                        Some(index) => self.evict(index),
                        None => return false,
                    }
                }
                Policy::None => return false,
            }
        }
        needed <= self.free_bytes()
    }

    /// The least recently used entry of `list` other than `protect`.
    fn tail_except(list: &List, slab: &Slab, protect: u32) -> Option<u32> {
        let tail = list.tail()?;
        if tail != protect {
            return Some(tail);
        }
        let prev = slab.node(tail).prev;
        (prev != NIL).then_some(prev)
    }

    /// The least frequent shortcut under `Dac` other than `protect`.
    fn least_frequent_shortcut(&self, protect: u32) -> Option<u32> {
        self.shortcut_frequency
            .values()
            .copied()
            .find(|&index| index != protect)
    }

    /// Turns the value at `index` into a shortcut whose frequency is the value's hit count. A
    /// value no larger than a shortcut would free nothing that way, so it is evicted instead.
    fn demote(&mut self, index: u32) {
        let node = self.slab.node(index);
        let value_len = node.value.as_ref().map_or(0, |value| value.len());
        if value_len <= SHORTCUT_BYTES {
            self.evict(index);
            return;
        }
        self.values.unlink(&mut self.slab, index);
        self.slab.node_mut(index).value = None;
        self.used_bytes -= value_len - SHORTCUT_BYTES;
        self.shortcut_attach(index);
        self.stats.demotions += 1;
    }

    fn evict(&mut self, index: u32) {
        self.drop_entry(index);
        self.stats.evictions += 1;
    }

    /// Applies the promotion rule to the shortcut at `index`, whose entry holds `value`, and
    /// promotes it if the rule allows. Returns whether it did.
    fn try_promote(&mut self, index: u32, value: &[u8]) -> bool {
        debug_assert_eq!(self.policy, Policy::Dac);
        let node = self.slab.node(index);
        let key_len = node.key.len();
        let hits = node.hits;
        let value_cost = value_cost_bytes(key_len, value.len());
        if value_cost > self.budget_bytes {
            return false;
        }
        let growth = value_cost.saturating_sub(shortcut_cost_bytes(key_len));
        if growth > self.free_bytes() {
            // Gather the least frequent shortcuts, oldest first among equals, until evicting them
            // would free enough; give up if that takes too many.
            let needed = growth - self.free_bytes();
            let mut freed = 0;
            let mut victim_hits: u64 = 0;
            self.victims.clear();
            for (&(frequency, _), &victim) in &self.shortcut_frequency {
                if freed >= needed {
                    break;
                }
                if victim == index {
                    continue;
                }
                if self.victims.len() == PROMOTION_EVICTIONS_MAX {
                    return false;
                }
                self.victims.push(victim);
                freed += Self::cost_of(self.slab.node(victim));
                victim_hits = victim_hits.saturating_add(frequency);
            }
            if freed < needed {
                return false;
            }
            // Promotion saves one READ on each of this key's hits; each victim's hits would cost
            // a miss instead of a READ.
            if hits as f64 <= self.miss_cost * victim_hits as f64 {
                return false;
            }
            for position in 0..self.victims.len() {
                let victim = self.victims[position];
                self.evict(victim);
            }
        }
        self.shortcut_detach(index);
        self.slab.node_mut(index).value = Some(Box::from(value));
        self.used_bytes = self.used_bytes - shortcut_cost_bytes(key_len) + value_cost;
        debug_assert!(self.used_bytes <= self.budget_bytes);
        self.values.push_front(&mut self.slab, index);
        self.stats.promotions += 1;
        true
    }

    /// Records a read of the shortcut at `index`.
    fn shortcut_hit(&mut self, index: u32) {
        match self.policy {
            Policy::Dac => {
                // The frequency is part of the order's key, so the entry leaves and re-enters.
                self.shortcut_detach(index);
                let node = self.slab.node_mut(index);
                node.hits = node.hits.saturating_add(1);
                self.shortcut_attach(index);
            }
            Policy::ShortcutOnly => {
                self.shortcut_recency.move_to_front(&mut self.slab, index);
                let node = self.slab.node_mut(index);
                node.hits = node.hits.saturating_add(1);
            }
            Policy::ValueOnly | Policy::None => {
                unreachable!("{:?} caches no shortcuts", self.policy)
            }
        }
    }

    /// Adds the shortcut at `index` to the policy's shortcut order: under `Dac` at its hit count
    /// as frequency and newest among equals, under `ShortcutOnly` as the most recently used.
    fn shortcut_attach(&mut self, index: u32) {
        match self.policy {
            Policy::Dac => {
                let arrival = self.arrival_next;
                self.arrival_next += 1;
                let node = self.slab.node_mut(index);
                node.seq = arrival;
                let previous = self.shortcut_frequency.insert((node.hits, arrival), index);
                debug_assert!(previous.is_none());
            }
            Policy::ShortcutOnly => self.shortcut_recency.push_front(&mut self.slab, index),
            Policy::ValueOnly | Policy::None => {
                unreachable!("{:?} caches no shortcuts", self.policy)
            }
        }
        self.shortcuts += 1;
    }

    fn shortcut_detach(&mut self, index: u32) {
        match self.policy {
            Policy::Dac => {
                let node = self.slab.node(index);
                let removed = self.shortcut_frequency.remove(&(node.hits, node.seq));
                debug_assert_eq!(removed, Some(index));
            }
            Policy::ShortcutOnly => self.shortcut_recency.unlink(&mut self.slab, index),
            Policy::ValueOnly | Policy::None => {
                unreachable!("{:?} caches no shortcuts", self.policy)
            }
        }
        self.shortcuts -= 1;
    }

    /// Removes the entry at `index` from its order, the map and the slab, and releases its bytes.
    fn drop_entry(&mut self, index: u32) {
        if self.slab.node(index).value.is_some() {
            self.values.unlink(&mut self.slab, index);
        } else {
            self.shortcut_detach(index);
        }
        let node = self.slab.remove(index);
        self.map.remove(&*node.key);
        self.used_bytes -= Self::cost_of(&node);
    }
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("policy", &self.policy)
            .field("miss_cost", &self.miss_cost)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
impl Cache {
    /// The hit count (for a shortcut under `Dac`, the frequency) of `key`, if cached.
    pub(super) fn hits_of(&self, key: &[u8]) -> Option<u64> {
        self.map.get(key).map(|&index| self.slab.node(index).hits)
    }

    /// Checks every invariant of the module documentation against the stored structures.
    pub(super) fn check_invariants(&self) {
        assert!(
            self.used_bytes <= self.budget_bytes,
            "{} > {}",
            self.used_bytes,
            self.budget_bytes
        );
        assert_eq!(self.map.len(), self.slab.live(), "map and slab disagree");
        assert_eq!(
            self.map.len(),
            self.values.len() + self.shortcuts,
            "entry counts"
        );
        let mut used_bytes = 0;
        for (key, &index) in &self.map {
            let node = self.slab.node(index);
            assert_eq!(key, &node.key, "map key and entry key");
            used_bytes += Self::cost_of(node);
        }
        assert_eq!(used_bytes, self.used_bytes, "byte accounting");

        let walk = |list: &List, want_value: bool| {
            let mut count = 0;
            let mut prev = NIL;
            let mut at = list.head().unwrap_or(NIL);
            while at != NIL {
                let node = self.slab.node(at);
                assert_eq!(node.value.is_some(), want_value, "entry kind in list");
                assert_eq!(node.prev, prev, "back link");
                assert_eq!(
                    self.map.get(&*node.key),
                    Some(&at),
                    "listed entry is in the map"
                );
                count += 1;
                prev = at;
                at = node.next;
            }
            assert_eq!(list.tail().unwrap_or(NIL), prev, "tail");
            assert_eq!(list.len(), count, "list length");
        };
        walk(&self.values, true);
        walk(&self.shortcut_recency, false);
        for (&(frequency, arrival), &index) in &self.shortcut_frequency {
            let node = self.slab.node(index);
            assert!(node.value.is_none(), "value in the frequency order");
            assert_eq!((node.hits, node.seq), (frequency, arrival), "frequency key");
        }
        let (recency, frequency) = (self.shortcut_recency.len(), self.shortcut_frequency.len());
        match self.policy {
            Policy::Dac => assert_eq!((recency, frequency), (0, self.shortcuts)),
            Policy::ShortcutOnly => {
                assert_eq!((recency, frequency), (self.shortcuts, 0));
                assert_eq!(self.values.len(), 0, "ShortcutOnly holds a value");
            }
            Policy::ValueOnly => assert_eq!(self.shortcuts, 0, "ValueOnly holds a shortcut"),
            Policy::None => assert!(self.map.is_empty(), "None holds an entry"),
        }
    }
}
