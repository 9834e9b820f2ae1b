//! The text of `INFO` and the replies of `CLUSTER` for one node.
//!
//! `INFO` has Redis's sections (server, clients, stats, keyspace) and a `dinomo` section with
//! the design's own measures: operations, round trips, verbs and bytes per cache outcome, cache
//! hit ratios, log and merge progress. Field names of the `dinomo` section are a contract with
//! `dinomo-bench` (perf/README.md): `round_trips`, `verbs_<kind>`, `bytes_<kind>`,
//! `hits_value`, `hits_shortcut`, `hits_log`, `misses`, `writes`, `round_trips_<outcome>`,
//! `verbs_<kind>_<outcome>`, `bytes_<kind>_<outcome>`.

use std::fmt::Write;

use crate::fabric::VerbKind;
use dinomo_control::{Owner, SLOT_COUNT, Slot, slots_of};

use crate::kn::routing::Routing;
use crate::kn::shared::{Shared, node_id};
use crate::kn::stats::Outcome;
use crate::resp::ReplyWriter;

const SECTIONS_DEFAULT: [&str; 5] = ["server", "clients", "stats", "keyspace", "dinomo"];

/// The `INFO` text for `sections` (empty, `default`, `all` or `everything`: every section).
pub fn info_text(shared: &Shared, sections: &[Vec<u8>], core: usize) -> String {
    let wanted: Vec<&str> = if sections.is_empty()
        || sections
            .iter()
            .any(|s| matches!(s.as_slice(), b"all" | b"everything" | b"default"))
    {
        SECTIONS_DEFAULT.to_vec()
    } else {
        SECTIONS_DEFAULT
            .iter()
            .copied()
            .filter(|name| sections.iter().any(|s| s.as_slice() == name.as_bytes()))
            .collect()
    };
    let (stats, cache, snapshots) = shared.totals();
    let id = &shared.identity;
    let mut out = String::new();
    for section in wanted {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        match section {
            "server" => {
                let _ = write!(
                    out,
                    "# Server\r\nredis_version:7.0.0\r\ndinomo_version:{}\r\nredis_mode:cluster\r\nos:{} {}\r\n\
                     process_id:{}\r\ntcp_port:{}\r\ncore_port:{}\r\nworker_cores:{}\r\nuptime_in_seconds:{}\r\n\
                     pool_uuid:{}\r\nfabric:{}\r\ndurability:{}\r\ncluster_epoch:{}\r\n",
                    env!("CARGO_PKG_VERSION"),
                    std::env::consts::OS,
                    std::env::consts::ARCH,
                    std::process::id(),
                    id.base_port,
                    id.core_ports.get(core).copied().unwrap_or(0),
                    shared.cores(),
                    id.started.elapsed().as_secs(),
                    id.pool_uuid,
                    id.fabric,
                    id.durability,
                    shared.routing().epoch(),
                );
            }
            "clients" => {
                let _ = write!(
                    out,
                    "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nrejected_connections:{}\r\n",
                    shared
                        .connections
                        .load(std::sync::atomic::Ordering::Relaxed),
                    shared.connections_max,
                    shared
                        .connections_rejected
                        .load(std::sync::atomic::Ordering::Relaxed),
                );
            }
            "stats" => {
                let _ = write!(
                    out,
                    "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
                     keyspace_hits:{}\r\nkeyspace_misses:{}\r\n",
                    shared
                        .connections_total
                        .load(std::sync::atomic::Ordering::Relaxed),
                    shared.commands.load(std::sync::atomic::Ordering::Relaxed),
                    stats.ops[Outcome::Value as usize]
                        + stats.ops[Outcome::Shortcut as usize]
                        + stats.ops[Outcome::Log as usize],
                    stats.ops[Outcome::Miss as usize],
                );
            }
            "keyspace" => {
                out.push_str("# Keyspace\r\n");
                if let Some(mn) = shared.mn.as_ref().and_then(|m| m.mn_stats()) {
                    let _ = write!(out, "db0:keys={},expires=0,avg_ttl=0\r\n", mn.keys.max(0));
                }
            }
            "dinomo" => dinomo_section(&mut out, shared, &stats, &cache, &snapshots),
            _ => {}
        }
    }
    out
}

fn dinomo_section(
    out: &mut String,
    shared: &Shared,
    stats: &crate::kn::stats::EngineStats,
    cache: &crate::cache::CacheStats,
    snapshots: &[crate::kn::shared::CoreSnapshot],
) {
    let id = &shared.identity;
    let reads = stats.ops[Outcome::Value as usize]
        + stats.ops[Outcome::Shortcut as usize]
        + stats.ops[Outcome::Log as usize]
        + stats.ops[Outcome::Miss as usize];
    let ratio = |n: u64| {
        if reads == 0 {
            0.0
        } else {
            n as f64 / reads as f64
        }
    };
    let _ = write!(
        out,
        "# Dinomo\r\ncache_policy:{}\r\ncache_bytes_per_core:{}\r\ncache_used_bytes:{}\r\ncache_values:{}\r\n\
         cache_shortcuts:{}\r\ncache_promotions:{}\r\ncache_demotions:{}\r\ncache_evictions:{}\r\n",
        id.cache_policy,
        id.cache_bytes_per_core,
        cache.used_bytes,
        cache.values,
        cache.shortcuts,
        cache.promotions,
        cache.demotions,
        cache.evictions,
    );
    let _ = write!(
        out,
        "ops:{}\r\nreads:{}\r\nwrites:{}\r\nhits_value:{}\r\nhits_shortcut:{}\r\nhits_log:{}\r\nmisses:{}\r\n\
         hit_ratio_value:{:.4}\r\nhit_ratio_shortcut:{:.4}\r\nhit_ratio_log:{:.4}\r\nmiss_ratio:{:.4}\r\n",
        stats.total_ops(),
        reads,
        stats.ops[Outcome::Write as usize],
        stats.ops[Outcome::Value as usize],
        stats.ops[Outcome::Shortcut as usize],
        stats.ops[Outcome::Log as usize],
        stats.ops[Outcome::Miss as usize],
        ratio(stats.ops[Outcome::Value as usize]),
        ratio(stats.ops[Outcome::Shortcut as usize]),
        ratio(stats.ops[Outcome::Log as usize]),
        ratio(stats.ops[Outcome::Miss as usize]),
    );
    let _ = write!(
        out,
        "round_trips:{}\r\n",
        stats.round_trips.iter().sum::<u64>()
    );
    for kind in VerbKind::ALL {
        let _ = write!(
            out,
            "verbs_{0}:{1}\r\nbytes_{0}:{2}\r\n",
            kind.name(),
            stats.total_verbs(kind),
            stats.total_bytes(kind)
        );
    }
    for outcome in Outcome::ALL {
        let o = outcome as usize;
        let _ = write!(
            out,
            "ops_{0}:{1}\r\nround_trips_{0}:{2}\r\n",
            outcome.name(),
            stats.ops[o],
            stats.round_trips[o]
        );
        for kind in VerbKind::ALL {
            let k = kind as usize;
            let _ = write!(
                out,
                "verbs_{0}_{1}:{2}\r\nbytes_{0}_{1}:{3}\r\n",
                kind.name(),
                outcome.name(),
                stats.verbs[o][k],
                stats.bytes[o][k]
            );
        }
    }
    let unmerged: usize = snapshots.iter().map(|s| s.unmerged_keys).sum();
    let sealed: usize = snapshots.iter().map(|s| s.sealed_blocks).sum();
    let failed = snapshots.iter().filter(|s| s.failure.is_some()).count();
    let _ = write!(
        out,
        "batches:{}\r\nbatch_entries:{}\r\nbatch_bytes:{}\r\nblock_switches:{}\r\nspare_rpcs:{}\r\n\
         merge_polls:{}\r\nsealed_released:{}\r\nsealed_blocks:{}\r\nunmerged_keys:{}\r\nbackpressure_waits:{}\r\n\
         table_refreshes:{}\r\nlookup_restarts:{}\r\nshortcut_stale:{}\r\nerrors:{}\r\nfailed_cores:{}\r\n",
        stats.batches,
        stats.batch_entries,
        stats.batch_bytes,
        stats.block_switches,
        stats.spare_rpcs,
        stats.merge_polls,
        stats.sealed_released,
        sealed,
        unmerged,
        stats.backpressure_waits,
        stats.table_refreshes,
        stats.lookup_restarts,
        stats.shortcut_stale,
        stats.errors,
        failed,
    );
    if let Some(mn) = shared.mn.as_ref().and_then(|m| m.mn_stats()) {
        let _ = write!(
            out,
            "mn_boot:{}\r\nmn_keys:{}\r\nmn_merged_entries:{}\r\nmn_merged_bytes:{}\r\nmn_blocks_total:{}\r\n\
             mn_blocks_free:{}\r\nmn_blocks_unlinked:{}\r\nmn_blocks_freed:{}\r\nmn_index_pairs:{}\r\nmn_index_resizes:{}\r\nmn_rpcs:{}\r\n",
            mn.boot,
            mn.keys,
            mn.merged_entries,
            mn.merged_bytes,
            mn.blocks_total,
            mn.blocks_free,
            mn.blocks_unlinked,
            mn.blocks_freed,
            mn.index_pairs,
            mn.index_resizes,
            mn.rpcs,
        );
    }
    for (i, s) in snapshots.iter().enumerate() {
        let _ = write!(
            out,
            "core{i}:port={},connections={},ops={},in_flight={},unmerged_keys={},sealed_blocks={},failed={}\r\n",
            s.port,
            s.connections,
            s.stats.total_ops(),
            s.in_flight,
            s.unmerged_keys,
            s.sealed_blocks,
            s.failure.is_some()
        );
    }
}

/// Answers `CLUSTER <subcommand>` for the connection on this node's core `core`, from the map
/// of `routing`: every core of every node is a master of its slot ranges, as Redis Cluster
/// clients expect. `None` for an unknown subcommand.
pub fn cluster_reply(
    shared: &Shared,
    core: usize,
    routing: &Routing,
    subcommand: &[u8],
    w: &mut ReplyWriter<'_>,
) -> Option<()> {
    let map = routing.map();
    let uuid = &shared.identity.pool_uuid;
    let me = Owner {
        kn: shared.identity.kn,
        core: shared.identity.core_ids[core],
    };
    let endpoint = |owner: Owner| -> (&str, u16) {
        let host = map.node(owner.kn).map_or("", |n| n.host.as_str());
        (host, map.core(owner).map_or(0, |c| c.port))
    };
    match subcommand {
        b"myid" => w.bulk(node_id(uuid, me).as_bytes()),
        b"slots" => {
            w.array_header(map.slots().len());
            for range in map.slots() {
                let (host, port) = endpoint(range.owner);
                w.array_header(3);
                w.integer(i64::from(range.start.get()));
                w.integer(i64::from(range.end.get()));
                w.array_header(3);
                w.bulk(host.as_bytes());
                w.integer(i64::from(port));
                w.bulk(node_id(uuid, range.owner).as_bytes());
            }
        }
        b"shards" => {
            let owners: Vec<Owner> = map.owners().collect();
            w.array_header(owners.len());
            for owner in owners {
                let ranges = slots_of(map, owner);
                let (host, port) = endpoint(owner);
                w.map_header(2);
                w.bulk(b"slots");
                w.array_header(ranges.len() * 2);
                for (start, end) in ranges {
                    w.integer(i64::from(start.get()));
                    w.integer(i64::from(end.get()));
                }
                w.bulk(b"nodes");
                w.array_header(1);
                w.map_header(7);
                w.bulk(b"id");
                w.bulk(node_id(uuid, owner).as_bytes());
                w.bulk(b"port");
                w.integer(i64::from(port));
                w.bulk(b"ip");
                w.bulk(host.as_bytes());
                w.bulk(b"endpoint");
                w.bulk(host.as_bytes());
                w.bulk(b"role");
                w.bulk(b"master");
                w.bulk(b"replication-offset");
                w.integer(0);
                w.bulk(b"health");
                w.bulk(b"online");
            }
        }
        b"nodes" => {
            let mut text = String::new();
            for owner in map.owners() {
                let (host, port) = endpoint(owner);
                let flags = if owner == me {
                    "myself,master"
                } else {
                    "master"
                };
                let _ = write!(
                    text,
                    "{} {host}:{port}@0 {flags} - 0 0 {} connected",
                    node_id(uuid, owner),
                    map.epoch()
                );
                for (start, end) in slots_of(map, owner) {
                    if start == end {
                        let _ = write!(text, " {start}");
                    } else {
                        let _ = write!(text, " {start}-{end}");
                    }
                }
                text.push('\n');
            }
            w.verbatim_text(text.as_bytes());
        }
        b"info" => {
            let owners = map.owners().count();
            let served = Slot::all()
                .filter(|&slot| routing.address(slot).is_some())
                .count();
            let text = format!(
                "cluster_enabled:1\r\ncluster_state:{}\r\ncluster_slots_assigned:{served}\r\n\
                 cluster_slots_ok:{served}\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\n\
                 cluster_known_nodes:{owners}\r\ncluster_size:{}\r\ncluster_current_epoch:{}\r\n\
                 cluster_my_epoch:{}\r\n",
                if served == usize::from(SLOT_COUNT) {
                    "ok"
                } else {
                    "fail"
                },
                map.slots()
                    .iter()
                    .map(|r| r.owner)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len(),
                map.epoch(),
                map.epoch(),
            );
            w.verbatim_text(text.as_bytes());
        }
        _ => return None,
    }
    Some(())
}
