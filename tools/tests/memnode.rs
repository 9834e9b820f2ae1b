//! `dinomo memnode` as a real process: started on 127.0.0.1:0 with the bound port read from its
//! stdout, driven by this test acting as a KN over the tcp fabric, killed or stopped, restarted.
//! A child's stderr is echoed when a test fails, and the child is killed when its handle drops.
//!
//! The kill test writes log batches the way a KN does — entries laid out by `pmem::Staging`, the
//! data WRITEs and tail WRITEs of a batch posted as one doorbell, spares from `AllocBlocks` — and
//! counts a batch as acknowledged when its last WRITE completes. It SIGKILLs the memory node in
//! the middle of the stream, restarts it on the same pool, and reads every acknowledged key back
//! through the remote path: the root line, the table header and `index::Probe` over fabric READs.
//!
//! Nothing here depends on timing: deadlines only turn a hang into a failure.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dinomo_control::Incarnation;
use dinomo_dataplane::fabric::tcp::TcpFabric;
use dinomo_dataplane::fabric::{CompletionData, Fabric, QueuePair, Verb, WrId, wait_for_until};
use dinomo_dataplane::mn::client::rpc;
use dinomo_dataplane::mn::proto::{PROTO_VERSION, Request, Response};
use dinomo_index::probe::decode_root;
use dinomo_index::{Probe, Step, key_hash};
use dinomo_pmem::constants::SUPERBLOCK_LEN;
use dinomo_pmem::index_format::{TABLE_HEADER_LEN, TableHeader};
use dinomo_pmem::{ChainId, FileOptions, Layout, Op, Pool, PoolOffset};

use dinomo_testkit::{
    ChainWriter, HANG, INCARNATION, Proc, Program, TOKEN, TempDir, claim_every_chain,
};

/// The binary under test.
const DINOMO: Program = Program(env!("CARGO_BIN_EXE_dinomo"));

fn fabric_of(node: &Proc) -> TcpFabric {
    TcpFabric::new(node.addr(), TOKEN)
}

/// A pool of 4 KiB blocks, so that a short stream crosses several blocks.
const POOL_SIZE: &str = "16MiB";
const BLOCK_SIZE: &str = "4KiB";
/// Largest batch the test KN stages.
const BATCH_BYTES_MAX: u64 = 8 << 10;
/// Batches acknowledged before the kill.
const ACKED_BEFORE_KILL: usize = 40;
/// The writer stops by itself after this many batches, killed or not.
const BATCHES_MAX: usize = 20_000;
/// Value size the remote probe's entry READ assumes; some values are longer, which costs the
/// probe a second READ.
const VALUE_HINT: u32 = 24;
/// Restarts of one remote lookup before the test gives up.
const PROBE_RESTARTS_MAX: u32 = 100;

/// Runs `dinomo memnode` with `args`, expecting it to fail; returns its status and stderr.
fn run_failing(args: &[&str]) -> (ExitStatus, String) {
    let mut node = DINOMO.spawn("memnode", args);
    let status = node.wait_exit();
    // The pipes close when the process exits; give the reader threads their last bytes.
    let deadline = Instant::now() + HANG;
    let stderr = loop {
        let text = node.stderr();
        if text.ends_with('\n') || Instant::now() >= deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(
        node.stdout.try_recv().is_err(),
        "a failed start printed on stdout"
    );
    (status, stderr)
}

fn assert_clean_failure(args: &[&str], expected: &[&str]) {
    let (status, stderr) = run_failing(args);
    assert!(!status.success(), "{args:?} succeeded");
    assert_eq!(
        status.code(),
        Some(1),
        "{args:?}: {status}, stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    for text in expected {
        assert!(
            stderr.contains(text),
            "{args:?}: expected {text:?} in {stderr}"
        );
    }
}

// The KN side.

fn call(qp: &mut dyn QueuePair, request: Request) -> Result<Response, String> {
    rpc(qp, &request).map_err(|e| format!("{request:?}: {e}"))
}

fn read(qp: &mut dyn QueuePair, wr: &mut u64, at: u64, len: u32) -> Result<Vec<u8>, String> {
    *wr += 1;
    let id = WrId(*wr);
    qp.post(
        id,
        Verb::Read {
            remote: PoolOffset(at),
            len,
        },
    )
    .map_err(|e| e.to_string())?;
    let mut others = Vec::new();
    let c = wait_for_until(qp, id, &mut others, Instant::now() + HANG)
        .ok_or_else(|| "a READ never completed".to_string())?;
    match c.result {
        Ok(CompletionData::Bytes(bytes)) => Ok(bytes),
        other => Err(format!("READ: {other:?}")),
    }
}

/// The pool's layout as a KN learns it: one READ of the superblock.
fn remote_layout(qp: &mut dyn QueuePair, wr: &mut u64) -> Layout {
    let sb = read(qp, wr, 0, SUPERBLOCK_LEN as u32).expect("read the superblock");
    Layout::decode(&sb, qp.region_len()).expect("a valid superblock")
}

/// A connection that said hello as [`INCARNATION`] and stored the map that gives it every
/// chain, and the pool's layout.
fn writer_qp(fabric: &TcpFabric) -> Result<(Box<dyn QueuePair>, Layout), String> {
    let mut qp = fabric.connect().map_err(|e| e.to_string())?;
    let layout = remote_layout(&mut *qp, &mut 0);
    claim_every_chain(&mut *qp, layout.chain_count, INCARNATION).map_err(|e| e.to_string())?;
    Ok((qp, layout))
}

/// A chain writer over the tcp fabric on a [`writer_qp`].
fn attach_writer(fabric: &TcpFabric, chain: u32) -> Result<ChainWriter, String> {
    let (qp, layout) = writer_qp(fabric)?;
    ChainWriter::attach(qp, layout, ChainId(chain), BATCH_BYTES_MAX)
}

/// What batch `n` of the stream writes: unique keys of varied length, an update of a hot key,
/// and now and then a delete of a key written seven batches earlier.
struct Batch {
    puts: Vec<(Vec<u8>, Vec<u8>)>,
    deletes: Vec<Vec<u8>>,
}

const DELETE_EVERY: usize = 5;
const DELETE_LAG: usize = 7;
const HOT_KEYS: usize = 5;

fn batch(n: usize) -> Batch {
    let mut puts: Vec<(Vec<u8>, Vec<u8>)> = (0..6)
        .map(|j| {
            let key = format!("u-{n}-{j}").into_bytes();
            let value = format!("v-{n}-{j}-{}", "p".repeat((n * 7 + j * 13) % 90)).into_bytes();
            (key, value)
        })
        .collect();
    puts.push((
        format!("hot-{}", n % HOT_KEYS).into_bytes(),
        format!("{n}").into_bytes(),
    ));
    let deletes = if n >= DELETE_LAG && n.is_multiple_of(DELETE_EVERY) {
        vec![format!("u-{}-0", n - DELETE_LAG).into_bytes()]
    } else {
        Vec::new()
    };
    Batch { puts, deletes }
}

fn write_batch(w: &mut ChainWriter, n: usize) -> Result<(), String> {
    let b = batch(n);
    for (k, v) in &b.puts {
        w.append(Op::Put, k, v)?;
    }
    for k in &b.deletes {
        w.append(Op::Delete, k, b"")?;
    }
    w.commit()
}

/// A KN's remote lookup: root line, table header, then the probe's READs.
fn remote_get(qp: &mut dyn QueuePair, root_off: PoolOffset, key: &[u8]) -> Option<Vec<u8>> {
    let mut wr = 1 << 40;
    let mut use_next = false;
    for _ in 0..PROBE_RESTARTS_MAX {
        let root = read(qp, &mut wr, root_off.get(), 16).expect("read the root line");
        let (table, next) = decode_root(&root).expect("a root line");
        let table = if use_next && next != 0 { next } else { table };
        let header_bytes =
            read(qp, &mut wr, table, TABLE_HEADER_LEN as u32).expect("read the table header");
        let Some(header) = TableHeader::decode(&header_bytes) else {
            use_next = false;
            continue;
        };
        let mut probe = Probe::new(header, key, key_hash(key), key_hash, VALUE_HINT);
        let mut step = probe.start();
        loop {
            match step {
                Step::Read { off, len } => {
                    let bytes = read(qp, &mut wr, off.get(), len).expect("probe READ");
                    step = probe.feed(&bytes);
                }
                Step::Hit(hit) => return Some(hit.value().to_vec()),
                Step::Miss => return None,
                Step::Moved => {
                    use_next = true;
                    break;
                }
                Step::Stale | Step::Retry => {
                    use_next = false;
                    break;
                }
            }
        }
    }
    panic!("the lookup of {key:?} kept restarting")
}

/// Where the root's index line is, from the pool file (read while no node serves it).
fn index_root_off(pool: &Path) -> PoolOffset {
    let pool = Pool::open_file(
        pool,
        FileOptions {
            persist: false,
            lock: true,
        },
    )
    .expect("the pool opens");
    pool.index_root_off()
}

fn hello_boot(fabric: &TcpFabric) -> u64 {
    let mut qp = fabric.connect().expect("connect");
    match call(
        &mut *qp,
        Request::Hello {
            version: PROTO_VERSION,
            incarnation: Incarnation::NONE,
        },
    ) {
        Ok(Response::Hello { boot, .. }) => boot,
        other => panic!("Hello: {other:?}"),
    }
}

#[test]
fn no_acknowledged_batch_is_lost_when_the_memory_node_is_killed() {
    let dir = TempDir::new("kill");
    let pool = dir.path("pool");
    let token_file = dir.token_file();
    let pool_arg = pool.to_str().unwrap();
    let token_arg = token_file.to_str().unwrap();
    let mut node = DINOMO.start(
        "memnode",
        &[
            "--pool",
            pool_arg,
            "--create",
            "--size",
            POOL_SIZE,
            "--block-size",
            BLOCK_SIZE,
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            token_arg,
            "--durability",
            "memory",
            "--merge-threads",
            "1",
        ],
    );
    node.wait_stderr("last stop: none (new pool)");

    // The KN streams batches on its own thread; this thread kills the node mid-stream.
    let acked = Arc::new(AtomicUsize::new(0));
    let fabric = fabric_of(&node);
    let acked_in_writer = Arc::clone(&acked);
    let writer = std::thread::spawn(move || -> Result<(usize, u64, String), String> {
        let mut w = attach_writer(&fabric, 0)?;
        let first_seq = w.next_seq();
        for n in 0..BATCHES_MAX {
            if let Err(e) = write_batch(&mut w, n) {
                return Ok((n, w.next_seq() - first_seq, e));
            }
            acked_in_writer.store(n + 1, Ordering::SeqCst);
        }
        Err("the stream ended without losing the memory node".into())
    });
    let deadline = Instant::now() + HANG;
    while acked.load(Ordering::SeqCst) < ACKED_BEFORE_KILL {
        assert!(Instant::now() < deadline, "the stream did not get going");
        assert!(!writer.is_finished(), "the writer stopped early");
        std::thread::sleep(Duration::from_millis(1));
    }
    node.kill();
    let (failed_at, staged_seqs, why) = writer.join().expect("writer thread").expect("stream");
    let acked = acked.load(Ordering::SeqCst);
    assert_eq!(
        failed_at, acked,
        "the first unacknowledged batch is the one that failed"
    );
    assert!(staged_seqs > 0);
    eprintln!("killed after {acked} acknowledged batches; the next one failed with: {why}");

    let root_off = index_root_off(&pool);
    let node = DINOMO.start(
        "memnode",
        &[
            "--pool",
            pool_arg,
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            token_arg,
            "--durability",
            "memory",
        ],
    );
    node.wait_stderr("last stop: unclean");
    let fabric = fabric_of(&node);
    assert_eq!(hello_boot(&fabric), 2);

    // The model: what the acknowledged batches leave, and what the unacknowledged batch may
    // have changed (it may or may not have landed).
    let mut model: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
    let mut hot_floor: HashMap<Vec<u8>, usize> = HashMap::new();
    for n in 0..acked {
        let b = batch(n);
        for (k, v) in b.puts {
            if k.starts_with(b"hot-") {
                hot_floor.insert(k, n);
            } else {
                model.insert(k, Some(v));
            }
        }
        for k in b.deletes {
            model.insert(k, None);
        }
    }
    let maybe_deleted = batch(acked).deletes;
    let mut qp = fabric.connect().expect("connect");
    for (key, expected) in &model {
        let got = remote_get(&mut *qp, root_off, key);
        if got.is_none() && maybe_deleted.contains(key) {
            continue;
        }
        assert_eq!(&got, expected, "key {}", String::from_utf8_lossy(key));
    }
    for (key, floor) in &hot_floor {
        let got = remote_get(&mut *qp, root_off, key).expect("a hot key is never deleted");
        let n: usize = String::from_utf8(got).unwrap().parse().unwrap();
        assert!(
            n >= *floor && n <= acked && n % HOT_KEYS == *floor % HOT_KEYS,
            "hot key {} has batch {n}, acknowledged {floor}",
            String::from_utf8_lossy(key)
        );
    }
    // The chain goes on after every acknowledged entry.
    let entries_acked: u64 = (0..acked)
        .map(|n| {
            let b = batch(n);
            (b.puts.len() + b.deletes.len()) as u64
        })
        .sum();
    drop(qp);
    let (mut qp, _) = writer_qp(&fabric).expect("a writer connection");
    let Ok(Response::Attached { next_seq, boot, .. }) =
        call(&mut *qp, Request::Attach { chain: ChainId(0) })
    else {
        panic!("attach after the restart")
    };
    assert_eq!(boot, 2);
    assert!(next_seq > entries_acked, "{next_seq} <= {entries_acked}");
}

#[test]
fn sigterm_stops_cleanly_and_the_restart_says_so() {
    let dir = TempDir::new("sigterm");
    let pool = dir.path("pool");
    let token_file = dir.token_file();
    let pool_arg = pool.to_str().unwrap();
    let token_arg = token_file.to_str().unwrap();
    let serve = |create: bool| {
        let mut args = vec!["--pool", pool_arg];
        if create {
            args.extend(["--create", "--size", POOL_SIZE, "--block-size", BLOCK_SIZE]);
        }
        args.extend([
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            token_arg,
            "--durability",
            "flush",
        ]);
        DINOMO.start("memnode", &args)
    };
    let mut node = serve(true);
    let mut w = attach_writer(&fabric_of(&node), 3).expect("attach");
    for n in 0..5 {
        write_batch(&mut w, n).expect("batch");
    }
    drop(w);
    node.signal("TERM");
    let status = node.wait_exit();
    assert!(status.success(), "{status}");
    node.wait_stderr("clean shutdown of boot 1");
    drop(node);

    let root_off = index_root_off(&pool);
    let node = serve(false);
    node.wait_stderr("last stop: clean");
    assert_eq!(hello_boot(&fabric_of(&node)), 2);
    let mut qp = fabric_of(&node).connect().expect("connect");
    for n in 0..5 {
        for (k, v) in batch(n)
            .puts
            .iter()
            .filter(|(k, _)| !k.starts_with(b"hot-"))
        {
            assert_eq!(remote_get(&mut *qp, root_off, k).as_ref(), Some(v));
        }
    }
    // SIGINT stops gracefully too.
    let mut node = node;
    node.signal("INT");
    assert!(node.wait_exit().success());
}

#[test]
fn a_missing_pool_without_create_fails_cleanly() {
    let dir = TempDir::new("missing");
    let pool = dir.path("no-such-pool");
    let token_file = dir.token_file();
    assert_clean_failure(
        &[
            "--pool",
            pool.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            token_file.to_str().unwrap(),
        ],
        &["does not exist", "--create"],
    );
    assert!(!pool.exists(), "nothing was created");
}

#[test]
fn corrupt_pool_files_fail_cleanly() {
    let dir = TempDir::new("corrupt");
    let token_file = dir.token_file();
    let token_arg = token_file.to_str().unwrap();
    let fails = |pool: &Path, expected: &[&str]| {
        assert_clean_failure(
            &[
                "--pool",
                pool.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--token-file",
                token_arg,
            ],
            expected,
        );
    };
    // Not a pool at all.
    let junk = dir.path("junk");
    std::fs::write(&junk, vec![0xA5; 1 << 20]).unwrap();
    fails(&junk, &["not a dinomo pool"]);
    // Shorter than a superblock.
    let short = dir.path("short");
    std::fs::write(&short, b"DINOMOPL").unwrap();
    fails(&short, &["shorter than a superblock"]);
    // A real pool whose superblock lost a byte.
    let pool = dir.path("pool");
    let mut node = DINOMO.start(
        "memnode",
        &[
            "--pool",
            pool.to_str().unwrap(),
            "--create",
            "--size",
            POOL_SIZE,
            "--block-size",
            BLOCK_SIZE,
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            token_arg,
        ],
    );
    node.signal("TERM");
    assert!(node.wait_exit().success());
    drop(node);
    let mut bytes = std::fs::read(&pool).unwrap();
    bytes[44] ^= 0x01;
    std::fs::write(&pool, &bytes).unwrap();
    fails(&pool, &["corrupt superblock", "checksum"]);
}

#[test]
fn bad_command_lines_fail_cleanly() {
    let dir = TempDir::new("args");
    let pool = dir.path("pool");
    let token_file = dir.token_file();
    let pool_arg = pool.to_str().unwrap();
    let token_arg = token_file.to_str().unwrap();
    let create = |extra: &[&'static str]| {
        let mut args = vec![
            "--pool",
            pool_arg,
            "--create",
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            token_arg,
        ];
        args.extend_from_slice(extra);
        args
    };
    assert_clean_failure(&create(&["--size", "4XB"]), &["invalid --size", "XB"]);
    assert_clean_failure(
        &create(&["--size", "16MiB", "--block-size", "3KiB"]),
        &["block size", "power of two"],
    );
    assert_clean_failure(&create(&["--size", "100KiB"]), &["pool size"]);
    assert!(!pool.exists(), "a refused configuration leaves no file");
    // No token: refused by the parser, before anything else happens.
    let (status, stderr) =
        run_failing(&["--pool", pool_arg, "--create", "--listen", "127.0.0.1:0"]);
    assert!(!status.success());
    assert!(stderr.contains("--token"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!pool.exists());
    // --create never destroys a pool unless told to.
    let mut node = DINOMO.start(
        "memnode",
        &create(&["--size", POOL_SIZE, "--block-size", BLOCK_SIZE]),
    );
    node.signal("TERM");
    assert!(node.wait_exit().success());
    drop(node);
    assert_clean_failure(
        &create(&["--size", POOL_SIZE, "--block-size", BLOCK_SIZE]),
        &["already exists", "--overwrite"],
    );
    let node = DINOMO.start(
        "memnode",
        &create(&[
            "--size",
            POOL_SIZE,
            "--block-size",
            BLOCK_SIZE,
            "--overwrite",
        ]),
    );
    node.wait_stderr("(created)");
}
