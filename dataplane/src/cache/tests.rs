//! Tests of the cache: the adaptive rules on crafted sequences, the hit accounting of every policy,
//! and a property test against a `HashMap` model.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

/// Length of the keys of the crafted tests, so their costs are easy to state.
const KEY_LEN: usize = 1;
const SHORTCUT_COST: usize = shortcut_cost_bytes(KEY_LEN);
/// Value length of the crafted tests: large enough that a value costs well over a shortcut.
const VALUE_LEN: usize = 400;
const VALUE_COST: usize = value_cost_bytes(KEY_LEN, VALUE_LEN);

fn key(n: u8) -> [u8; KEY_LEN] {
    [n]
}

fn value(n: u8) -> Vec<u8> {
    vec![n; VALUE_LEN]
}

fn shortcut(n: u64) -> Shortcut {
    Shortcut {
        entry_offset: 4096 * n,
        entry_len: 24 + n as u32,
    }
}

fn insert(cache: &mut Cache, n: u8) {
    cache.insert(&key(n), &value(n), shortcut(u64::from(n)));
}

fn gets(cache: &mut Cache, n: u8, times: usize) {
    for _ in 0..times {
        assert_ne!(cache.get(&key(n)), Lookup::Miss, "key {n}");
    }
}

fn is_value(cache: &Cache, n: u8) -> bool {
    matches!(cache.peek(&key(n)), Lookup::Value { .. })
}

fn is_shortcut(cache: &Cache, n: u8) -> bool {
    matches!(cache.peek(&key(n)), Lookup::Shortcut(_))
}

fn is_miss(cache: &Cache, n: u8) -> bool {
    cache.peek(&key(n)) == Lookup::Miss
}

/// A full `Dac` cache of five shortcuts, keys 0 to 4, with frequencies 4, 1, 2, 3 and
/// `1 + hot_gets`. Promoting key 4 needs `VALUE_COST - SHORTCUT_COST` bytes, which evicting the
/// two least frequent other shortcuts (keys 1 and 2, frequencies 1 + 2 = 3) frees.
fn five_shortcuts(hot_gets: usize) -> Cache {
    let mut cache = Cache::new(Policy::Dac, 5 * SHORTCUT_COST);
    // Key 0 enters as a value; keys 1 and 2 find no room for a value and enter as shortcuts; key 3
    // finds no room even for a shortcut, so key 0 is demoted to make it; key 4 fills the rest.
    for n in 0..5 {
        insert(&mut cache, n);
    }
    let stats = cache.stats();
    assert_eq!((stats.values, stats.shortcuts, stats.demotions), (0, 5, 1));
    assert_eq!(stats.used_bytes, stats.budget_bytes);
    gets(&mut cache, 0, 3);
    gets(&mut cache, 2, 1);
    gets(&mut cache, 3, 2);
    gets(&mut cache, 4, hot_gets);
    let frequencies: Vec<_> = (0..5).map(|n| cache.hits_of(&key(n)).unwrap()).collect();
    assert_eq!(frequencies, [4, 1, 2, 3, 1 + hot_gets as u64]);
    cache.check_invariants();
    cache
}

#[test]
fn dac_promotes_when_hits_beat_miss_cost_times_displaced_hits() {
    // 7 > 2 × (1 + 2).
    let mut cache = five_shortcuts(6);
    assert_eq!(cache.miss_cost(), MISS_COST_ROUND_TRIPS_DEFAULT);
    cache.set_miss_cost(2.0);
    cache.shortcut_filled(&key(4), &value(4), shortcut(4));
    cache.check_invariants();
    assert_eq!(
        cache.get(&key(4)),
        Lookup::Value {
            value: &value(4),
            shortcut: shortcut(4)
        }
    );
    assert!(
        is_miss(&cache, 1) && is_miss(&cache, 2),
        "the two least frequent are evicted"
    );
    assert!(
        is_shortcut(&cache, 0) && is_shortcut(&cache, 3),
        "the others stay"
    );
    let stats = cache.stats();
    assert_eq!((stats.promotions, stats.evictions), (1, 2));
    assert_eq!((stats.values, stats.shortcuts), (1, 2));
    assert_eq!(stats.used_bytes, VALUE_COST + 2 * SHORTCUT_COST);
}

#[test]
fn dac_does_not_promote_when_hits_only_equal_the_displaced_cost() {
    // 6 > 2 × 3 is false: the rule is strict.
    let mut cache = five_shortcuts(5);
    cache.set_miss_cost(2.0);
    cache.shortcut_filled(&key(4), &value(4), shortcut(4));
    cache.check_invariants();
    assert!((0..5).all(|n| is_shortcut(&cache, n)));
    let stats = cache.stats();
    assert_eq!((stats.promotions, stats.evictions), (0, 0));
}

#[test]
fn dac_miss_cost_flips_the_promotion() {
    let mut cache = five_shortcuts(6);
    // 7 > 3 × 3 is false: dearer misses make the shortcuts worth keeping.
    cache.set_miss_cost(3.0);
    cache.shortcut_filled(&key(4), &value(4), shortcut(4));
    assert!((0..5).all(|n| is_shortcut(&cache, n)));
    // Measurements without meaning leave the estimate alone.
    cache.set_miss_cost(f64::NAN);
    cache.set_miss_cost(-1.0);
    cache.set_miss_cost(f64::INFINITY);
    assert_eq!(cache.miss_cost(), 3.0);
    cache.shortcut_filled(&key(4), &value(4), shortcut(4));
    assert!(is_shortcut(&cache, 4));
    // 7 > 2 × 3: cheaper misses let the hot key become a value.
    cache.set_miss_cost(2.0);
    cache.shortcut_filled(&key(4), &value(4), shortcut(4));
    cache.check_invariants();
    assert!(is_value(&cache, 4));
    assert!(is_miss(&cache, 1) && is_miss(&cache, 2));
    assert_eq!(cache.stats().promotions, 1);
}

#[test]
fn dac_write_to_a_shortcut_applies_the_promotion_rule() {
    let mut cache = five_shortcuts(6);
    cache.set_miss_cost(3.0);
    // Not promoted: the shortcut is refreshed to the new entry.
    cache.insert(&key(4), &value(40), shortcut(40));
    assert_eq!(cache.peek(&key(4)), Lookup::Shortcut(shortcut(40)));
    cache.set_miss_cost(2.0);
    cache.insert(&key(4), &value(44), shortcut(44));
    cache.check_invariants();
    assert_eq!(
        cache.peek(&key(4)),
        Lookup::Value {
            value: &value(44),
            shortcut: shortcut(44)
        }
    );
    assert!(is_miss(&cache, 1) && is_miss(&cache, 2));
}

#[test]
fn dac_ignores_a_fill_whose_shortcut_was_replaced() {
    let mut cache = five_shortcuts(20);
    // A write moves key 4 to a new entry, too dear to promote, while a READ of the old entry is
    // in flight.
    cache.set_miss_cost(100.0);
    cache.insert(&key(4), &value(99), shortcut(99));
    assert_eq!(cache.peek(&key(4)), Lookup::Shortcut(shortcut(99)));
    // Even a promotion that costs nothing must not cache the old entry's value.
    cache.set_miss_cost(0.0);
    cache.shortcut_filled(&key(4), &value(4), shortcut(4));
    assert_eq!(
        cache.peek(&key(4)),
        Lookup::Shortcut(shortcut(99)),
        "stale fill ignored"
    );
    cache.shortcut_filled(&key(4), &value(99), shortcut(99));
    assert_eq!(
        cache.peek(&key(4)),
        Lookup::Value {
            value: &value(99),
            shortcut: shortcut(99)
        }
    );
    // A fill for a key that is no longer cached caches nothing.
    cache.remove(&key(0));
    cache.shortcut_filled(&key(0), &value(0), shortcut(0));
    assert!(is_miss(&cache, 0));
    cache.check_invariants();
}

#[test]
fn dac_promotes_into_free_budget_without_evicting() {
    let mut cache = Cache::new(Policy::Dac, VALUE_COST + 2 * SHORTCUT_COST);
    insert(&mut cache, 0);
    insert(&mut cache, 1);
    assert!(is_value(&cache, 0) && is_shortcut(&cache, 1));
    // Room opens up; the shortcut now fits as a value whatever its frequency.
    cache.remove(&key(0));
    cache.set_miss_cost(1000.0);
    cache.shortcut_filled(&key(1), &value(1), shortcut(1));
    assert!(is_value(&cache, 1));
    let stats = cache.stats();
    assert_eq!((stats.promotions, stats.evictions), (1, 0));
    cache.check_invariants();
}

#[test]
fn dac_promotion_evicts_at_most_the_named_number_of_shortcuts() {
    const SHORTCUTS: usize = PROMOTION_EVICTIONS_MAX + 6;
    let budget = SHORTCUTS * SHORTCUT_COST;
    // Shortcut bytes a value of this length needs beyond its own shortcut, in whole shortcuts.
    let victims_for = |value_len: usize| {
        (value_cost_bytes(KEY_LEN, value_len) - SHORTCUT_COST).div_ceil(SHORTCUT_COST)
    };
    let too_big = (PROMOTION_EVICTIONS_MAX + 2) * SHORTCUT_COST;
    let just_right = (PROMOTION_EVICTIONS_MAX - 1) * SHORTCUT_COST;
    assert!(victims_for(too_big) > PROMOTION_EVICTIONS_MAX);
    assert!(victims_for(just_right) <= PROMOTION_EVICTIONS_MAX);
    assert!(value_cost_bytes(KEY_LEN, too_big) <= budget);

    let mut cache = Cache::new(Policy::Dac, budget);
    cache.set_miss_cost(0.0);
    for n in 0..SHORTCUTS as u8 {
        // Values larger than the budget can only be cached as shortcuts.
        cache.insert(&key(n), &vec![n; budget], shortcut(u64::from(n)));
    }
    assert_eq!(cache.stats().shortcuts, SHORTCUTS);
    let hot = SHORTCUTS as u8 - 1;
    gets(&mut cache, hot, 1000);
    cache.shortcut_filled(&key(hot), &vec![hot; too_big], shortcut(u64::from(hot)));
    assert!(
        is_shortcut(&cache, hot),
        "needs too many victims even at zero miss cost"
    );
    assert_eq!(cache.stats().evictions, 0);
    cache.shortcut_filled(&key(hot), &vec![hot; just_right], shortcut(u64::from(hot)));
    assert!(is_value(&cache, hot));
    assert_eq!(cache.stats().evictions, victims_for(just_right) as u64);
    cache.check_invariants();
}

#[test]
fn dac_demotes_the_least_recently_used_value_with_its_hits_as_frequency() {
    let mut cache = Cache::new(Policy::Dac, 2 * VALUE_COST + 100);
    insert(&mut cache, 0);
    insert(&mut cache, 1);
    assert!(is_value(&cache, 0) && is_value(&cache, 1));
    gets(&mut cache, 1, 2);
    gets(&mut cache, 0, 1);
    // Key 1 is now the least recently used value, with 3 hits.
    insert(&mut cache, 2);
    cache.check_invariants();
    assert_eq!(cache.peek(&key(1)), Lookup::Shortcut(shortcut(1)));
    assert_eq!(cache.hits_of(&key(1)), Some(3));
    assert!(is_value(&cache, 0));
    assert_eq!(
        cache.peek(&key(2)),
        Lookup::Shortcut(shortcut(2)),
        "a new key enters as a shortcut"
    );
    assert_eq!(cache.hits_of(&key(2)), Some(1));
    let stats = cache.stats();
    assert_eq!((stats.demotions, stats.evictions), (1, 0));
    assert_eq!(stats.used_bytes, VALUE_COST + 2 * SHORTCUT_COST);

    // The demoted key keeps its frequency: new shortcuts at frequency 1 are evicted before it,
    // once the last value has been demoted too (with 2 hits).
    for n in 3..9 {
        insert(&mut cache, n);
        cache.check_invariants();
    }
    assert!(is_shortcut(&cache, 0) && is_shortcut(&cache, 1));
    assert_eq!(cache.hits_of(&key(0)), Some(2));
    assert!(
        (2..5).all(|n| is_miss(&cache, n)),
        "the oldest shortcuts of frequency 1 go first"
    );
    assert!((5..9).all(|n| is_shortcut(&cache, n)));
    let stats = cache.stats();
    assert_eq!((stats.demotions, stats.evictions), (2, 3));
}

#[test]
fn dac_evicts_a_tiny_value_rather_than_demoting_it() {
    let tiny = value_cost_bytes(KEY_LEN, SHORTCUT_BYTES);
    let mut cache = Cache::new(Policy::Dac, tiny + SHORTCUT_COST);
    cache.insert(&key(0), &[0; SHORTCUT_BYTES], shortcut(0));
    insert(&mut cache, 1);
    assert!(is_value(&cache, 0) && is_shortcut(&cache, 1));
    // A shortcut would cost as much as the value, so the value is evicted to make room.
    insert(&mut cache, 2);
    cache.check_invariants();
    assert!(is_miss(&cache, 0) && is_shortcut(&cache, 1) && is_shortcut(&cache, 2));
    let stats = cache.stats();
    assert_eq!((stats.demotions, stats.evictions), (0, 1));
    // A tiny value is made room for as a value, not entered as a shortcut.
    cache.insert(&key(3), &[3; 8], shortcut(3));
    cache.check_invariants();
    assert!(is_value(&cache, 3));
}

#[test]
fn dac_growing_value_demotes_others_to_stay_a_value() {
    let mut cache = Cache::new(Policy::Dac, 2 * VALUE_COST + 50);
    insert(&mut cache, 0);
    insert(&mut cache, 1);
    let bigger = vec![7; VALUE_LEN + 100];
    cache.insert(&key(0), &bigger, shortcut(70));
    cache.check_invariants();
    assert_eq!(
        cache.peek(&key(0)),
        Lookup::Value {
            value: &bigger,
            shortcut: shortcut(70)
        }
    );
    assert_eq!(cache.peek(&key(1)), Lookup::Shortcut(shortcut(1)));
    assert_eq!(cache.stats().demotions, 1);
}

#[test]
fn value_only_keeps_values_in_recency_order() {
    let mut cache = Cache::new(Policy::ValueOnly, 2 * VALUE_COST);
    insert(&mut cache, 0);
    insert(&mut cache, 1);
    gets(&mut cache, 0, 1);
    insert(&mut cache, 2);
    cache.check_invariants();
    assert!(is_value(&cache, 0) && is_miss(&cache, 1) && is_value(&cache, 2));
    // A value larger than the budget is not cached and displaces nothing.
    cache.insert(&key(3), &vec![3; 2 * VALUE_COST], shortcut(3));
    assert!(is_miss(&cache, 3) && is_value(&cache, 0) && is_value(&cache, 2));
    // Growing past the budget drops the stale value rather than keeping it, and evicts nothing
    // in vain.
    cache.insert(&key(0), &vec![9; 2 * VALUE_COST], shortcut(9));
    assert!(is_miss(&cache, 0) && is_value(&cache, 2));
    let stats = cache.stats();
    assert_eq!(
        (stats.evictions, stats.demotions, stats.shortcuts),
        (1, 0, 0)
    );
    cache.check_invariants();
}

#[test]
fn shortcut_only_keeps_shortcuts_in_recency_order() {
    let mut cache = Cache::new(Policy::ShortcutOnly, 2 * SHORTCUT_COST);
    insert(&mut cache, 0);
    insert(&mut cache, 1);
    assert_eq!(cache.peek(&key(0)), Lookup::Shortcut(shortcut(0)));
    gets(&mut cache, 0, 1);
    insert(&mut cache, 2);
    assert!(is_shortcut(&cache, 0) && is_miss(&cache, 1) && is_shortcut(&cache, 2));
    // A write refreshes the shortcut and counts as a use; fills never promote.
    cache.insert(&key(2), &value(2), shortcut(22));
    cache.shortcut_filled(&key(2), &value(2), shortcut(22));
    assert_eq!(cache.peek(&key(2)), Lookup::Shortcut(shortcut(22)));
    insert(&mut cache, 3);
    assert!(is_miss(&cache, 0) && is_shortcut(&cache, 2) && is_shortcut(&cache, 3));
    let stats = cache.stats();
    assert_eq!((stats.values, stats.promotions, stats.evictions), (0, 0, 2));
    cache.check_invariants();
}

/// Hits and misses of every policy over one script, with room for everything.
#[test]
fn hit_accounting_of_every_policy() {
    let script = |cache: &mut Cache| {
        let mut outcomes = String::new();
        let mut get = |cache: &mut Cache, n: u8| {
            outcomes.push(match cache.get(&key(n)) {
                Lookup::Value { .. } => 'v',
                Lookup::Shortcut(_) => 's',
                Lookup::Miss => 'm',
            });
        };
        get(cache, 0);
        insert(cache, 0);
        get(cache, 0);
        get(cache, 0);
        get(cache, 1);
        insert(cache, 1);
        get(cache, 1);
        assert!(cache.remove(&key(0)) != (cache.policy() == Policy::None));
        get(cache, 0);
        get(cache, 1);
        cache.check_invariants();
        outcomes
    };
    let budget = 10 * VALUE_COST;
    for (policy, outcomes, value_hits, shortcut_hits, misses) in [
        (Policy::Dac, "mvvmvmv", 4, 0, 3),
        (Policy::ValueOnly, "mvvmvmv", 4, 0, 3),
        (Policy::ShortcutOnly, "mssmsms", 0, 4, 3),
        (Policy::None, "mmmmmmm", 0, 0, 7),
    ] {
        let mut cache = Cache::new(policy, budget);
        assert_eq!(script(&mut cache), outcomes, "{policy:?}");
        let stats = cache.stats();
        assert_eq!(
            (stats.value_hits, stats.shortcut_hits, stats.misses),
            (value_hits, shortcut_hits, misses),
            "{policy:?}"
        );
    }
}

/// Hits and misses of `Dac` when the budget splits keys between values and shortcuts.
#[test]
fn hit_accounting_of_dac_with_values_and_shortcuts() {
    let mut cache = Cache::new(Policy::Dac, VALUE_COST + SHORTCUT_COST);
    insert(&mut cache, 0);
    insert(&mut cache, 1);
    assert!(matches!(cache.get(&key(0)), Lookup::Value { .. }));
    assert_eq!(cache.get(&key(1)), Lookup::Shortcut(shortcut(1)));
    assert_eq!(cache.get(&key(2)), Lookup::Miss);
    // No shortcut to evict and no free room: key 1 stays a shortcut.
    cache.set_miss_cost(0.0);
    cache.shortcut_filled(&key(1), &value(1), shortcut(1));
    assert_eq!(cache.get(&key(1)), Lookup::Shortcut(shortcut(1)));
    let stats = cache.stats();
    assert_eq!(
        (stats.value_hits, stats.shortcut_hits, stats.misses),
        (1, 2, 1)
    );
    assert_eq!(cache.hits_of(&key(1)), Some(3));
}

#[test]
fn retain_and_clear_drop_entries_but_keep_counters() {
    let mut cache = Cache::new(Policy::Dac, 3 * VALUE_COST + 3 * SHORTCUT_COST);
    for n in 0..6 {
        insert(&mut cache, n);
    }
    assert_eq!(cache.len(), 6);
    gets(&mut cache, 5, 1);
    cache.retain(|key| key[0] % 2 == 0);
    cache.check_invariants();
    assert!([0, 2, 4].iter().all(|&n| !is_miss(&cache, n)));
    assert!([1, 3, 5].iter().all(|&n| is_miss(&cache, n)));
    assert_eq!(
        cache.stats().evictions,
        0,
        "dropping moved keys is not an eviction"
    );
    cache.clear();
    cache.check_invariants();
    assert!(cache.is_empty());
    let stats = cache.stats();
    assert_eq!((stats.used_bytes, stats.values, stats.shortcuts), (0, 0, 0));
    assert_eq!(stats.shortcut_hits + stats.value_hits, 1);
    insert(&mut cache, 1);
    assert!(is_value(&cache, 1));
}

#[test]
fn budgets_too_small_or_too_large() {
    let mut cache = Cache::new(Policy::Dac, 0);
    insert(&mut cache, 0);
    assert!(cache.is_empty());
    let mut cache = Cache::new(Policy::Dac, SHORTCUT_COST);
    insert(&mut cache, 0);
    assert_eq!(cache.peek(&key(0)), Lookup::Shortcut(shortcut(0)));
    assert_eq!(
        Cache::new(Policy::Dac, usize::MAX).budget_bytes(),
        BUDGET_BYTES_MAX
    );
}

#[test]
fn cache_can_move_to_its_core() {
    fn assert_send<T: Send>() {}
    assert_send::<Cache>();
}

/// One step of the property test.
#[derive(Clone, Debug)]
enum Op {
    Insert {
        key: u8,
        value_len: usize,
        fill: u8,
    },
    Get {
        key: u8,
    },
    /// Reports a READ of the key's current entry, or of its first entry ever (stale once the key
    /// has been written again).
    Fill {
        key: u8,
        stale: bool,
    },
    Remove {
        key: u8,
    },
    SetMissCost {
        half_round_trips: u8,
    },
    Retain {
        parity: u8,
    },
    Clear,
}

/// Keys of the property test: few, so that they collide, of lengths 1 to 3.
const MODEL_KEYS: u8 = 10;

fn model_key(n: u8) -> Vec<u8> {
    vec![n; 1 + usize::from(n % 3)]
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..MODEL_KEYS;
    prop_oneof![
        6 => (key.clone(), 0..700usize, any::<u8>())
            .prop_map(|(key, value_len, fill)| Op::Insert { key, value_len, fill }),
        8 => key.clone().prop_map(|key| Op::Get { key }),
        3 => (key.clone(), any::<bool>()).prop_map(|(key, stale)| Op::Fill { key, stale }),
        2 => key.prop_map(|key| Op::Remove { key }),
        1 => (0..8u8).prop_map(|half_round_trips| Op::SetMissCost { half_round_trips }),
        1 => (0..2u8).prop_map(|parity| Op::Retain { parity }),
        1 => Just(Op::Clear),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        3 => Just(Policy::Dac),
        1 => Just(Policy::ValueOnly),
        1 => Just(Policy::ShortcutOnly),
        1 => Just(Policy::None),
    ]
}

/// Checks what the cache holds for every model key against the model, without touching it.
fn check_against_model(cache: &Cache, model: &HashMap<u8, (Vec<u8>, Shortcut)>) {
    for n in 0..MODEL_KEYS {
        match (cache.peek(&model_key(n)), model.get(&n)) {
            (Lookup::Miss, _) => {}
            (Lookup::Value { value, shortcut }, Some((last_value, last_shortcut))) => {
                assert_eq!(value, &last_value[..], "value of key {n}");
                assert_eq!(
                    &shortcut, last_shortcut,
                    "shortcut with the value of key {n}"
                );
            }
            (Lookup::Shortcut(shortcut), Some((_, last_shortcut))) => {
                assert_eq!(&shortcut, last_shortcut, "shortcut of key {n}");
            }
            (found, None) => panic!("key {n} was removed or never inserted, found {found:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn cache_agrees_with_a_model(
        policy in policy(),
        budget in 0..4000usize,
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let mut cache = Cache::new(policy, budget);
        // The last value and shortcut given for each key not removed since.
        let mut model: HashMap<u8, (Vec<u8>, Shortcut)> = HashMap::new();
        // The first value and shortcut ever given for each key, for stale fills.
        let mut first: HashMap<u8, (Vec<u8>, Shortcut)> = HashMap::new();
        let mut gets = 0u64;
        // Every write goes to a new log entry, so shortcuts never repeat.
        let mut entries = 0u64;
        for op in ops {
            match op {
                Op::Insert { key, value_len, fill } => {
                    entries += 1;
                    let shortcut = Shortcut { entry_offset: 64 * entries, entry_len: 64 };
                    let value = vec![fill; value_len];
                    cache.insert(&model_key(key), &value, shortcut);
                    first.entry(key).or_insert_with(|| (value.clone(), shortcut));
                    model.insert(key, (value, shortcut));
                }
                Op::Get { key } => {
                    gets += 1;
                    let expected = model.get(&key);
                    match (cache.get(&model_key(key)), expected) {
                        (Lookup::Miss, _) => {}
                        (Lookup::Value { value, shortcut }, Some((last_value, last_shortcut))) => {
                            prop_assert_eq!(value, &last_value[..]);
                            prop_assert_eq!(&shortcut, last_shortcut);
                        }
                        (Lookup::Shortcut(shortcut), Some((_, last_shortcut))) => {
                            prop_assert_eq!(&shortcut, last_shortcut);
                        }
                        (found, None) => {
                            prop_assert!(false, "removed key {} found as {:?}", key, found);
                        }
                    }
                }
                Op::Fill { key, stale } => {
                    let source = if stale { &first } else { &model };
                    if let Some((value, shortcut)) = source.get(&key) {
                        cache.shortcut_filled(&model_key(key), value, *shortcut);
                    }
                }
                Op::Remove { key } => {
                    let was_cached = cache.peek(&model_key(key)) != Lookup::Miss;
                    prop_assert_eq!(cache.remove(&model_key(key)), was_cached);
                    model.remove(&key);
                }
                Op::SetMissCost { half_round_trips } => {
                    cache.set_miss_cost(f64::from(half_round_trips) / 2.0);
                }
                Op::Retain { parity } => {
                    cache.retain(|key| key[0] % 2 != parity);
                    model.retain(|&key, _| key % 2 != parity);
                }
                Op::Clear => {
                    cache.clear();
                    model.clear();
                }
            }
            cache.check_invariants();
            check_against_model(&cache, &model);
            let stats = cache.stats();
            prop_assert!(stats.used_bytes <= stats.budget_bytes);
            prop_assert_eq!(stats.budget_bytes, budget);
            prop_assert_eq!(stats.value_hits + stats.shortcut_hits + stats.misses, gets);
            prop_assert_eq!(stats.values + stats.shortcuts, cache.len());
            prop_assert!(cache.len() <= model.len());
            prop_assert!(cache.len() <= budget / ENTRY_OVERHEAD_BYTES);
            match policy {
                Policy::Dac => {}
                Policy::ValueOnly => {
                    prop_assert_eq!(stats.shortcut_hits + stats.promotions + stats.demotions, 0);
                }
                Policy::ShortcutOnly => {
                    prop_assert_eq!(stats.value_hits + stats.promotions + stats.demotions, 0);
                }
                Policy::None => {
                    prop_assert_eq!(stats.misses, gets);
                    prop_assert_eq!(stats.evictions + stats.promotions + stats.demotions, 0);
                }
            }
        }
    }
}
