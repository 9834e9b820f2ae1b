//! Fabric conformance: the same test bodies run against every backend — `local` without delay,
//! `local` with an injected round trip and link cap, `tcp` (a server on 127.0.0.1:0) and, where
//! an RDMA device exists and the `rdma` feature is on, `rdma`. A backend that cannot run here
//! prints why it was skipped and passes.
//!
//! The bodies use verbs to check verbs (so that they also run where the test cannot see the
//! pool), and look at the pool directly where the harness has it. Nothing here depends on
//! timing: waits carry a generous deadline only so that a hung backend fails instead of hanging.

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use dinomo_dataplane::fabric::local::{LocalFabric, LocalOptions};
use dinomo_dataplane::fabric::tcp::{TcpFabric, TcpRpcForwarder};
use dinomo_dataplane::fabric::{
    Completion, CompletionData, DOORBELL_VERBS_MAX, Fabric, PeerId, PostError, QP_IN_FLIGHT_MAX,
    QueuePair, RPC_BYTES_MAX, RpcHandler, VERB_BYTES_MAX, Verb, VerbError, VerbKind, WrId,
};
use dinomo_dataplane::mn::tcp_server::{TcpServer, TcpServerConfig};
use dinomo_pmem::{MemBackend, PoolOffset, SharedBackend};
use dinomo_testkit::{HANG, TempDir};

/// Pool size of most tests.
const POOL_BYTES: u64 = 1 << 20;
const TOKEN: &[u8] = b"conformance-token";

/// The RPC handler of the suite: echoes with a prefix, and holds requests named "gate" until
/// the test opens the gate.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }
}

struct Echo(Arc<Gate>);

impl RpcHandler for Echo {
    fn handle(&self, _peer: PeerId, request: &[u8]) -> Vec<u8> {
        if request == b"gate" {
            let deadline = Instant::now() + HANG;
            let mut open = self.0.open.lock().unwrap();
            while !*open && Instant::now() < deadline {
                open = self.0.changed.wait_timeout(open, HANG).unwrap().0;
            }
        }
        let mut reply = b"echo:".to_vec();
        reply.extend_from_slice(request);
        reply
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Local,
    LocalDelay,
    Tcp,
    Rdma,
}

struct Harness {
    fabric: Arc<dyn Fabric>,
    /// The pool, where the test can see it.
    backend: Option<SharedBackend>,
    gate: Arc<Gate>,
    region: u64,
    _server: Option<TcpServer>,
    #[cfg(feature = "rdma")]
    _rdma: Option<dinomo_dataplane::mn::rdma_server::RdmaServer>,
}

fn harness(kind: Kind, pool_bytes: u64) -> Result<Harness, String> {
    let gate = Arc::new(Gate::default());
    let handler: Arc<dyn RpcHandler> = Arc::new(Echo(Arc::clone(&gate)));
    let backend: SharedBackend = Arc::new(MemBackend::new(pool_bytes));
    let mut h = Harness {
        fabric: Arc::new(LocalFabric::new(
            Arc::clone(&backend),
            LocalOptions::default(),
        )),
        backend: Some(Arc::clone(&backend)),
        gate,
        region: pool_bytes,
        _server: None,
        #[cfg(feature = "rdma")]
        _rdma: None,
    };
    match kind {
        Kind::Local => {
            h.fabric = Arc::new(LocalFabric::new(
                backend,
                LocalOptions::default().with_rpc_handler(handler),
            ));
        }
        Kind::LocalDelay => {
            h.fabric = Arc::new(LocalFabric::new(
                backend,
                LocalOptions::default()
                    .with_rtt(Duration::from_micros(20))
                    .with_link_bytes_per_sec(10 << 30)
                    .with_rpc_handler(handler),
            ));
        }
        Kind::Tcp => {
            let server = TcpServer::start(
                backend,
                Some(handler),
                TcpServerConfig::new("127.0.0.1:0".parse().unwrap(), TOKEN),
            )
            .map_err(|e| format!("cannot start the tcp server: {e}"))?;
            h.fabric = Arc::new(TcpFabric::new(server.local_addr(), TOKEN));
            h._server = Some(server);
        }
        Kind::Rdma => return rdma_harness(h, handler),
    }
    Ok(h)
}

#[cfg(not(feature = "rdma"))]
fn rdma_harness(_h: Harness, _handler: Arc<dyn RpcHandler>) -> Result<Harness, String> {
    Err("built without the `rdma` feature".into())
}

#[cfg(feature = "rdma")]
fn rdma_harness(mut h: Harness, handler: Arc<dyn RpcHandler>) -> Result<Harness, String> {
    use dinomo_dataplane::fabric::rdma::{RdmaFabric, RdmaOptions, first_device};
    use dinomo_dataplane::mn::rdma_server::{RdmaRegion, RdmaServer, RdmaServerConfig};
    use dinomo_dataplane::mn::rpc_pool::HandlerService;
    let device = first_device().map_err(|e| e.to_string())?;
    let region = RdmaRegion::anonymous(h.region).map_err(|e| e.to_string())?;
    let server = RdmaServer::start(
        region,
        RdmaServerConfig::new("127.0.0.1:0".parse().unwrap(), TOKEN).with_device(&device),
    )
    .map_err(|e| format!("cannot start the rdma server on {device}: {e}"))?;
    let options = RdmaOptions::default()
        .with_device(&device)
        .with_rpc_service(Arc::new(HandlerService(handler)));
    h.fabric = Arc::new(RdmaFabric::new(server.local_addr(), TOKEN, options));
    h.backend = None;
    h._rdma = Some(server);
    Ok(h)
}

fn run(kind: Kind, pool_bytes: u64, body: fn(&Harness)) {
    match harness(kind, pool_bytes) {
        Ok(h) => body(&h),
        Err(why) => eprintln!("{kind:?}: skipped: {why}"),
    }
}

fn connect(h: &Harness) -> Box<dyn QueuePair> {
    h.fabric.connect().expect("connect a queue pair")
}

/// Polls until `n` completions have arrived.
fn wait_n(qp: &mut dyn QueuePair, n: usize) -> Vec<Completion> {
    let deadline = Instant::now() + HANG;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let want = n - out.len();
        if qp.poll(&mut out, want) == 0 {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {want} completions"
            );
            std::thread::yield_now();
        }
    }
    out
}

/// Posts one verb and waits for its completion.
fn call(qp: &mut dyn QueuePair, verb: Verb) -> Result<CompletionData, VerbError> {
    let kind = verb.kind();
    qp.post(WrId(u64::MAX), verb).expect("post");
    let c = wait_n(qp, 1).remove(0);
    assert_eq!(c.wr, WrId(u64::MAX));
    assert_eq!(c.kind, kind);
    c.result
}

fn read(qp: &mut dyn QueuePair, at: u64, len: u32) -> Vec<u8> {
    match call(
        qp,
        Verb::Read {
            remote: PoolOffset(at),
            len,
        },
    ) {
        Ok(CompletionData::Bytes(b)) => b,
        other => panic!("READ at {at:#x} gave {other:?}"),
    }
}

fn write(qp: &mut dyn QueuePair, at: u64, data: &[u8]) {
    let r = call(
        qp,
        Verb::Write {
            remote: PoolOffset(at),
            data: data.to_vec(),
            persist: false,
        },
    );
    assert_eq!(r, Ok(CompletionData::None), "WRITE at {at:#x}");
}

fn cas(
    qp: &mut dyn QueuePair,
    at: u64,
    expected: u64,
    new: u64,
) -> Result<CompletionData, VerbError> {
    call(
        qp,
        Verb::Cas {
            remote: PoolOffset(at),
            expected,
            new,
        },
    )
}

fn faa(qp: &mut dyn QueuePair, at: u64, add: u64) -> Result<CompletionData, VerbError> {
    call(
        qp,
        Verb::Faa {
            remote: PoolOffset(at),
            add,
        },
    )
}

fn word(qp: &mut dyn QueuePair, at: u64) -> u64 {
    u64::from_le_bytes(read(qp, at, 8).try_into().unwrap())
}

// ---- The test bodies ----

fn verb_semantics(h: &Harness) {
    let mut qp = connect(h);
    let qp = &mut *qp;
    assert_eq!(qp.region_len(), h.region);
    write(qp, 100, b"hello, pool");
    assert_eq!(read(qp, 100, 11), b"hello, pool");
    assert_eq!(read(qp, 104, 3), b"o, ");
    // Zero-length verbs at the very end of the region are in bounds.
    assert_eq!(read(qp, h.region, 0), b"");
    write(qp, h.region, b"");
    // The last bytes of the region.
    write(qp, h.region - 3, b"end");
    assert_eq!(read(qp, h.region - 3, 3), b"end");
    // A persistent write completes like a plain one and its bytes are there.
    let r = call(
        qp,
        Verb::Write {
            remote: PoolOffset(200),
            data: vec![0xab; 40],
            persist: true,
        },
    );
    assert_eq!(r, Ok(CompletionData::None));
    assert_eq!(read(qp, 200, 40), vec![0xab; 40]);

    // CAS returns the old value on success and on failure; only success changes the word.
    write(qp, 512, &7u64.to_le_bytes());
    assert_eq!(cas(qp, 512, 7, 9), Ok(CompletionData::Word(7)));
    assert_eq!(word(qp, 512), 9);
    assert_eq!(cas(qp, 512, 7, 11), Ok(CompletionData::Word(9)));
    assert_eq!(word(qp, 512), 9);
    // FAA returns the old value and wraps like the hardware does.
    assert_eq!(faa(qp, 512, 5), Ok(CompletionData::Word(9)));
    assert_eq!(faa(qp, 512, u64::MAX), Ok(CompletionData::Word(14)));
    assert_eq!(word(qp, 512), 13);
    // Words are little-endian in the pool.
    assert_eq!(read(qp, 512, 8), 13u64.to_le_bytes());
    if let Some(b) = &h.backend {
        assert_eq!(b.load(512), 13);
        let mut bytes = [0u8; 11];
        b.read(100, &mut bytes);
        assert_eq!(&bytes, b"hello, pool");
    }
}

fn concurrent_faa(h: &Harness) {
    const QPS: usize = 4;
    const EACH: usize = 1000;
    const AT: u64 = 4096;
    let olds: Vec<Vec<u64>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..QPS)
            .map(|_| {
                s.spawn(|| {
                    let mut qp = connect(h);
                    let mut olds = Vec::with_capacity(EACH);
                    // Keep 32 in flight so the backends see concurrent atomics.
                    let mut posted = 0;
                    while olds.len() < EACH {
                        while posted < EACH && posted - olds.len() < 32 {
                            qp.post(
                                WrId(posted as u64),
                                Verb::Faa {
                                    remote: PoolOffset(AT),
                                    add: 1,
                                },
                            )
                            .unwrap();
                            posted += 1;
                        }
                        for c in wait_n(&mut *qp, 1) {
                            match c.result {
                                Ok(CompletionData::Word(w)) => olds.push(w),
                                other => panic!("FAA gave {other:?}"),
                            }
                        }
                    }
                    olds
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut qp = connect(h);
    assert_eq!(word(&mut *qp, AT), (QPS * EACH) as u64);
    // No lost update: every old value from 0 to the total was returned exactly once.
    let all: HashSet<u64> = olds.iter().flatten().copied().collect();
    assert_eq!(all.len(), QPS * EACH);
    assert!(all.iter().all(|&w| w < (QPS * EACH) as u64));
}

fn concurrent_cas_increment(h: &Harness) {
    const QPS: usize = 4;
    const EACH: u64 = 250;
    const AT: u64 = 8192;
    std::thread::scope(|s| {
        for _ in 0..QPS {
            s.spawn(|| {
                let mut qp = connect(h);
                let mut guess = 0;
                let mut done = 0;
                while done < EACH {
                    match cas(&mut *qp, AT, guess, guess + 1) {
                        Ok(CompletionData::Word(old)) if old == guess => {
                            done += 1;
                            guess += 1;
                        }
                        Ok(CompletionData::Word(old)) => guess = old,
                        other => panic!("CAS gave {other:?}"),
                    }
                }
            });
        }
    });
    let mut qp = connect(h);
    assert_eq!(word(&mut *qp, AT), QPS as u64 * EACH);
}

fn bad_verbs_get_error_completions(h: &Harness) {
    let mut qp = connect(h);
    let qp = &mut *qp;
    let region = h.region;
    write(qp, region - 8, &[0x5a; 8]);
    let oob = |offset: u64, len: u64| VerbError::OutOfBounds {
        offset,
        len,
        region,
    };
    let cases: Vec<(Verb, VerbError)> = vec![
        (
            Verb::Read {
                remote: PoolOffset(region - 4),
                len: 8,
            },
            oob(region - 4, 8),
        ),
        (
            Verb::Read {
                remote: PoolOffset(u64::MAX - 2),
                len: 8,
            },
            oob(u64::MAX - 2, 8),
        ),
        (
            Verb::Write {
                remote: PoolOffset(region - 4),
                data: vec![1; 8],
                persist: true,
            },
            oob(region - 4, 8),
        ),
        (
            Verb::Write {
                remote: PoolOffset(region + 1),
                data: vec![],
                persist: false,
            },
            oob(region + 1, 0),
        ),
        (
            Verb::Cas {
                remote: PoolOffset(region),
                expected: 0,
                new: 1,
            },
            oob(region, 8),
        ),
        (
            Verb::Faa {
                remote: PoolOffset(u64::MAX - 7),
                add: 1,
            },
            oob(u64::MAX - 7, 8),
        ),
        (
            Verb::Cas {
                remote: PoolOffset(region - 12),
                expected: 0,
                new: 1,
            },
            VerbError::Misaligned(region - 12),
        ),
        (
            Verb::Faa {
                remote: PoolOffset(3),
                add: 1,
            },
            VerbError::Misaligned(3),
        ),
        (
            Verb::Read {
                remote: PoolOffset(0),
                len: VERB_BYTES_MAX as u32 + 1,
            },
            VerbError::TooLarge(VERB_BYTES_MAX + 1),
        ),
        (
            Verb::Write {
                remote: PoolOffset(0),
                data: vec![0; VERB_BYTES_MAX as usize + 1],
                persist: false,
            },
            VerbError::TooLarge(VERB_BYTES_MAX + 1),
        ),
    ];
    for (verb, expected) in cases {
        let shown = format!("{:?}", verb.kind());
        assert_eq!(call(qp, verb), Err(expected), "{shown}");
    }
    let big_rpc = Verb::Rpc {
        request: vec![0; RPC_BYTES_MAX as usize + 1],
    };
    assert_eq!(
        call(qp, big_rpc),
        Err(VerbError::TooLarge(RPC_BYTES_MAX + 1))
    );
    // Nothing was written outside, nor at the edge, and the queue pair still works.
    assert_eq!(read(qp, region - 8, 8), [0x5a; 8]);
    write(qp, 0, b"still alive");
    assert_eq!(read(qp, 0, 11), b"still alive");
    assert_eq!(
        faa(qp, 0, 0),
        Ok(CompletionData::Word(u64::from_le_bytes(*b"still al")))
    );
    let c = qp.counters();
    assert_eq!(c.errors, 11);
    assert_eq!(qp.in_flight(), 0);
}

fn large_transfers(h: &Harness) {
    let mut qp = connect(h);
    let qp = &mut *qp;
    let n = VERB_BYTES_MAX as usize;
    let pattern: Vec<u8> = (0..n).map(|i| (i * 7 + i / 4096) as u8).collect();
    write(qp, 0, &pattern);
    let back = read(qp, 0, n as u32);
    assert!(
        back == pattern,
        "a READ of {n} bytes differs from the WRITE"
    );
    // Unaligned middle pieces.
    assert_eq!(read(qp, 12_345, 100_001), pattern[12_345..12_345 + 100_001]);
    if let Some(b) = &h.backend {
        let mut tail = vec![0u8; 4096];
        b.read(n as u64 - 4096, &mut tail);
        assert_eq!(tail, pattern[n - 4096..]);
    }
}

fn many_in_flight_and_doorbells(h: &Harness) {
    let mut qp = connect(h);
    let qp = &mut *qp;
    // Fill the queue pair: QP_IN_FLIGHT_MAX writes in doorbells of DOORBELL_VERBS_MAX.
    let mut wr = 0u64;
    while (wr as usize) < QP_IN_FLIGHT_MAX {
        let batch: Vec<_> = (0..DOORBELL_VERBS_MAX)
            .map(|i| {
                let w = wr + i as u64;
                (
                    WrId(w),
                    Verb::Write {
                        remote: PoolOffset(w * 16),
                        data: w.to_le_bytes().to_vec(),
                        persist: false,
                    },
                )
            })
            .collect();
        qp.post_batch(batch).unwrap();
        wr += DOORBELL_VERBS_MAX as u64;
    }
    assert_eq!(qp.in_flight(), QP_IN_FLIGHT_MAX);
    let done = wait_n(qp, QP_IN_FLIGHT_MAX);
    let ids: HashSet<u64> = done.iter().map(|c| c.wr.0).collect();
    assert_eq!(ids.len(), QP_IN_FLIGHT_MAX);
    assert!(done.iter().all(|c| c.result == Ok(CompletionData::None)));
    // One doorbell of mixed verbs; each completion carries its own result.
    let mut batch = Vec::new();
    for i in 0..DOORBELL_VERBS_MAX as u64 {
        let verb = match i % 3 {
            0 => Verb::Read {
                remote: PoolOffset(i * 16),
                len: 8,
            },
            1 => Verb::Faa {
                remote: PoolOffset(i * 16),
                add: 1,
            },
            _ => Verb::Cas {
                remote: PoolOffset(i * 16),
                expected: i,
                new: 0,
            },
        };
        batch.push((WrId(1000 + i), verb));
    }
    let before = qp.counters();
    qp.post_batch(batch).unwrap();
    for c in wait_n(qp, DOORBELL_VERBS_MAX) {
        let i = c.wr.0 - 1000;
        let expected = match i % 3 {
            0 => CompletionData::Bytes(i.to_le_bytes().to_vec()),
            _ => CompletionData::Word(i),
        };
        assert_eq!(c.result, Ok(expected), "wr {}", c.wr.0);
    }
    let d = qp.counters().since(&before);
    assert_eq!(d.doorbells, 1);
    assert_eq!(d.total_verbs(), DOORBELL_VERBS_MAX as u64);
    // The CAS with the right guess swapped in zero.
    assert_eq!(word(qp, 2 * 16), 0);
}

fn writes_execute_in_order(h: &Harness) {
    let mut qp = connect(h);
    let qp = &mut *qp;
    // A WRITE then a READ of the same bytes in one doorbell: the READ sees the WRITE.
    qp.post_batch(vec![
        (
            WrId(1),
            Verb::Write {
                remote: PoolOffset(64),
                data: b"first".to_vec(),
                persist: false,
            },
        ),
        (
            WrId(2),
            Verb::Write {
                remote: PoolOffset(64),
                data: b"second".to_vec(),
                persist: true,
            },
        ),
        (
            WrId(3),
            Verb::Read {
                remote: PoolOffset(64),
                len: 6,
            },
        ),
    ])
    .unwrap();
    // And across separate doorbells posted back to back, with nothing reaped in between.
    for i in 0..50u64 {
        qp.post(
            WrId(10 + i),
            Verb::Write {
                remote: PoolOffset(128),
                data: i.to_le_bytes().to_vec(),
                persist: false,
            },
        )
        .unwrap();
    }
    qp.post(
        WrId(99),
        Verb::Read {
            remote: PoolOffset(128),
            len: 8,
        },
    )
    .unwrap();
    qp.post(
        WrId(100),
        Verb::Faa {
            remote: PoolOffset(128),
            add: 1,
        },
    )
    .unwrap();
    let done = wait_n(qp, 3 + 50 + 2);
    let by_id = |id: u64| done.iter().find(|c| c.wr.0 == id).unwrap().result.clone();
    assert_eq!(by_id(3), Ok(CompletionData::Bytes(b"second".to_vec())));
    assert_eq!(
        by_id(99),
        Ok(CompletionData::Bytes(49u64.to_le_bytes().to_vec()))
    );
    assert_eq!(by_id(100), Ok(CompletionData::Word(49)));
}

fn queue_full_at_the_limit(h: &Harness) {
    let mut qp = connect(h);
    let qp = &mut *qp;
    for i in 0..QP_IN_FLIGHT_MAX as u64 {
        qp.post(
            WrId(i),
            Verb::Read {
                remote: PoolOffset(0),
                len: 8,
            },
        )
        .unwrap();
    }
    let refused = qp.post(
        WrId(999),
        Verb::Read {
            remote: PoolOffset(0),
            len: 8,
        },
    );
    assert_eq!(
        refused,
        Err(PostError::QueueFull {
            in_flight: QP_IN_FLIGHT_MAX
        })
    );
    // All or none: a batch that does not fit is refused whole.
    let mut got = wait_n(qp, 1);
    let batch = vec![
        (
            WrId(1000),
            Verb::Faa {
                remote: PoolOffset(0),
                add: 1
            }
        );
        2
    ];
    assert!(matches!(
        qp.post_batch(batch),
        Err(PostError::QueueFull { .. })
    ));
    got.extend(wait_n(qp, QP_IN_FLIGHT_MAX - 1));
    assert_eq!(qp.in_flight(), 0);
    // A doorbell longer than the limit is invalid.
    let batch = vec![
        (
            WrId(1),
            Verb::Read {
                remote: PoolOffset(0),
                len: 8
            }
        );
        DOORBELL_VERBS_MAX + 1
    ];
    assert!(matches!(qp.post_batch(batch), Err(PostError::Invalid(_))));
    // Nothing of the refused posts ran.
    assert_eq!(word(qp, 0), 0);
    assert_eq!(qp.post_batch(Vec::new()), Ok(()));
}

fn rpc_round_trip(h: &Harness) {
    let mut qp = connect(h);
    let qp = &mut *qp;
    let r = call(
        qp,
        Verb::Rpc {
            request: b"ping".to_vec(),
        },
    );
    assert_eq!(r, Ok(CompletionData::Bytes(b"echo:ping".to_vec())));
    // A request and reply at the size limit.
    let big = vec![7u8; RPC_BYTES_MAX as usize - 5];
    let mut expected = b"echo:".to_vec();
    expected.extend_from_slice(&big);
    assert_eq!(
        call(qp, Verb::Rpc { request: big }),
        Ok(CompletionData::Bytes(expected))
    );
    // A slow RPC does not hold up verbs posted after it: the gate stays closed until the READ
    // has completed, so the READ cannot wait for the RPC.
    qp.post(
        WrId(1),
        Verb::Rpc {
            request: b"gate".to_vec(),
        },
    )
    .unwrap();
    qp.post(
        WrId(2),
        Verb::Read {
            remote: PoolOffset(0),
            len: 8,
        },
    )
    .unwrap();
    let first = wait_n(qp, 1).remove(0);
    assert_eq!(first.wr, WrId(2));
    assert_eq!(qp.in_flight(), 1);
    h.gate.open();
    let second = wait_n(qp, 1).remove(0);
    assert_eq!(second.wr, WrId(1));
    assert_eq!(
        second.result,
        Ok(CompletionData::Bytes(b"echo:gate".to_vec()))
    );
}

fn counters_count_verbs_bytes_and_doorbells(h: &Harness) {
    let mut qp = connect(h);
    let qp = &mut *qp;
    let start = qp.counters();
    write(qp, 0, &[1; 100]);
    read(qp, 0, 40);
    cas(qp, 0, 0, 0).unwrap();
    faa(qp, 8, 1).unwrap();
    call(
        qp,
        Verb::Rpc {
            request: b"abc".to_vec(),
        },
    )
    .unwrap();
    qp.post_batch(vec![
        (
            WrId(1),
            Verb::Read {
                remote: PoolOffset(0),
                len: 10,
            },
        ),
        (
            WrId(2),
            Verb::Read {
                remote: PoolOffset(0),
                len: 10,
            },
        ),
    ])
    .unwrap();
    wait_n(qp, 2);
    call(
        qp,
        Verb::Faa {
            remote: PoolOffset(1),
            add: 1,
        },
    )
    .unwrap_err();
    let d = qp.counters().since(&start);
    assert_eq!(d.verbs_of(VerbKind::Write), 1);
    assert_eq!(d.verbs_of(VerbKind::Read), 3);
    assert_eq!(d.verbs_of(VerbKind::Cas), 1);
    assert_eq!(d.verbs_of(VerbKind::Faa), 2);
    assert_eq!(d.verbs_of(VerbKind::Rpc), 1);
    assert_eq!(d.bytes_of(VerbKind::Write), 100);
    assert_eq!(d.bytes_of(VerbKind::Read), 60);
    assert_eq!(d.bytes_of(VerbKind::Cas), 8);
    assert_eq!(d.bytes_of(VerbKind::Faa), 16);
    assert_eq!(d.bytes_of(VerbKind::Rpc), 3 + 8);
    assert_eq!(d.doorbells, 7);
    assert_eq!(d.errors, 1);
}

fn large_pool() -> u64 {
    VERB_BYTES_MAX + (1 << 20)
}

macro_rules! suite {
    ($module:ident, $kind:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn verb_semantics() {
                run($kind, POOL_BYTES, super::verb_semantics);
            }
            #[test]
            fn concurrent_faa() {
                run($kind, POOL_BYTES, super::concurrent_faa);
            }
            #[test]
            fn concurrent_cas_increment() {
                run($kind, POOL_BYTES, super::concurrent_cas_increment);
            }
            #[test]
            fn bad_verbs_get_error_completions() {
                run($kind, POOL_BYTES, super::bad_verbs_get_error_completions);
            }
            #[test]
            fn large_transfers() {
                run($kind, large_pool(), super::large_transfers);
            }
            #[test]
            fn many_in_flight_and_doorbells() {
                run($kind, POOL_BYTES, super::many_in_flight_and_doorbells);
            }
            #[test]
            fn writes_execute_in_order() {
                run($kind, POOL_BYTES, super::writes_execute_in_order);
            }
            #[test]
            fn queue_full_at_the_limit() {
                run($kind, POOL_BYTES, super::queue_full_at_the_limit);
            }
            #[test]
            fn rpc_round_trip() {
                run($kind, POOL_BYTES, super::rpc_round_trip);
            }
            #[test]
            fn counters_count_verbs_bytes_and_doorbells() {
                run(
                    $kind,
                    POOL_BYTES,
                    super::counters_count_verbs_bytes_and_doorbells,
                );
            }
        }
    };
}

suite!(local, Kind::Local);
suite!(local_delay, Kind::LocalDelay);
suite!(tcp, Kind::Tcp);
suite!(rdma, Kind::Rdma);

// ---- Backend-specific checks ----

#[test]
fn rpc_without_a_handler_is_refused() {
    let backend: SharedBackend = Arc::new(MemBackend::new(POOL_BYTES));
    let local = LocalFabric::new(Arc::clone(&backend), LocalOptions::default());
    let server = TcpServer::start(
        backend,
        None,
        TcpServerConfig::new("127.0.0.1:0".parse().unwrap(), TOKEN),
    )
    .unwrap();
    let tcp = TcpFabric::new(server.local_addr(), TOKEN);
    for fabric in [&local as &dyn Fabric, &tcp] {
        let mut qp = fabric.connect().unwrap();
        let r = call(
            &mut *qp,
            Verb::Rpc {
                request: b"x".to_vec(),
            },
        );
        assert!(
            matches!(r, Err(VerbError::Refused(_))),
            "{}: {r:?}",
            fabric.name()
        );
    }
}

/// The local fabric's verbs with RPCs forwarded over tcp to the MN process: the model of several
/// processes mapping one pool file (CXL shared memory). The MN and the KN map the same file
/// through two separate backends, as two processes would.
#[test]
fn local_verbs_on_a_shared_pool_file_with_tcp_rpcs() {
    use dinomo_pmem::backend::{FileBackend, FileOptions, OpenMode};

    let dir = TempDir::new("fabric");
    let path = dir.path("pool");
    let mn: SharedBackend = Arc::new(
        FileBackend::open(
            &path,
            OpenMode::CreateNew { size: POOL_BYTES },
            FileOptions::default(),
        )
        .unwrap(),
    );
    let kn: SharedBackend = Arc::new(
        FileBackend::open(
            &path,
            OpenMode::Existing,
            FileOptions {
                persist: true,
                lock: false,
            },
        )
        .unwrap(),
    );
    let gate = Arc::new(Gate::default());
    let server = TcpServer::start(
        Arc::clone(&mn),
        Some(Arc::new(Echo(gate))),
        TcpServerConfig::new("127.0.0.1:0".parse().unwrap(), TOKEN),
    )
    .unwrap();
    let tcp = TcpFabric::new(server.local_addr(), TOKEN);
    let forwarder = TcpRpcForwarder::new(tcp.clone());
    let local = LocalFabric::new(
        kn,
        LocalOptions::default()
            .with_rtt(Duration::from_micros(2))
            .with_rpc_service(Arc::new(forwarder)),
    );
    let mut lq = local.connect().unwrap();
    let mut tq = tcp.connect().unwrap();
    let r = call(
        &mut *lq,
        Verb::Write {
            remote: PoolOffset(40),
            data: b"shared".to_vec(),
            persist: true,
        },
    );
    assert_eq!(r, Ok(CompletionData::None));
    // The MN's own mapping and its tcp server see the KN's write.
    assert_eq!(read(&mut *tq, 40, 6), b"shared");
    let mut bytes = [0u8; 6];
    mn.read(40, &mut bytes);
    assert_eq!(&bytes, b"shared");
    // And the KN sees the MN's atomics.
    assert_eq!(faa(&mut *tq, 64, 5), Ok(CompletionData::Word(0)));
    assert_eq!(word(&mut *lq, 64), 5);
    for i in 0..20 {
        let request = format!("rpc {i}").into_bytes();
        let mut expected = b"echo:".to_vec();
        expected.extend_from_slice(&request);
        assert_eq!(
            call(&mut *lq, Verb::Rpc { request }),
            Ok(CompletionData::Bytes(expected))
        );
    }
    // With the MN gone, forwarded RPCs fail with an error completion instead of hanging.
    server.shutdown();
    let r = call(
        &mut *lq,
        Verb::Rpc {
            request: b"late".to_vec(),
        },
    );
    assert!(r.is_err(), "{r:?}");
}

#[test]
fn local_link_cap_orders_due_times() {
    let backend: SharedBackend = Arc::new(MemBackend::new(POOL_BYTES));
    // One byte per second: the second transfer is due a whole transfer after the first.
    let fabric = LocalFabric::new(backend, LocalOptions::default().with_link_bytes_per_sec(1));
    let mut qp = fabric.connect_local();
    qp.post(
        WrId(1),
        Verb::Read {
            remote: PoolOffset(0),
            len: 100,
        },
    )
    .unwrap();
    let first = qp.next_due().unwrap();
    qp.post(
        WrId(2),
        Verb::Read {
            remote: PoolOffset(0),
            len: 100,
        },
    )
    .unwrap();
    let mut out = Vec::new();
    assert_eq!(qp.poll(&mut out, 8), 0);
    assert_eq!(qp.in_flight(), 2);
    assert_eq!(qp.next_due(), Some(first));
    assert!(first >= Instant::now() + Duration::from_secs(50));
}

#[test]
fn tcp_disconnect_completes_outstanding_requests() {
    let gate = Arc::new(Gate::default());
    let backend: SharedBackend = Arc::new(MemBackend::new(POOL_BYTES));
    let server = TcpServer::start(
        backend,
        Some(Arc::new(Echo(Arc::clone(&gate)))),
        TcpServerConfig::new("127.0.0.1:0".parse().unwrap(), TOKEN),
    )
    .unwrap();
    let fabric = TcpFabric::new(server.local_addr(), TOKEN);
    let mut qp = fabric.connect().unwrap();
    qp.post(
        WrId(5),
        Verb::Rpc {
            request: b"gate".to_vec(),
        },
    )
    .unwrap();
    // Wait until the server has the request (the READ behind it is answered first).
    qp.post(
        WrId(6),
        Verb::Read {
            remote: PoolOffset(0),
            len: 8,
        },
    )
    .unwrap();
    assert_eq!(wait_n(&mut *qp, 1)[0].wr, WrId(6));
    // The RPC is held at the gate, so its reply cannot go out before the shutdown closes the
    // connection: the request completes with `Disconnected`, not never.
    let stopper = std::thread::spawn(move || server.shutdown());
    let c = wait_n(&mut *qp, 1).remove(0);
    assert_eq!(c.wr, WrId(5));
    assert!(matches!(c.result, Err(VerbError::Disconnected(_))), "{c:?}");
    gate.open();
    stopper.join().unwrap();
    // Once the server is gone, posts fail or complete with an error.
    let deadline = Instant::now() + HANG;
    loop {
        match qp.post(
            WrId(7),
            Verb::Read {
                remote: PoolOffset(0),
                len: 8,
            },
        ) {
            Err(PostError::Disconnected(_)) => break,
            Err(other) => panic!("{other:?}"),
            Ok(()) => {
                let c = wait_n(&mut *qp, 1).remove(0);
                if matches!(c.result, Err(VerbError::Disconnected(_))) {
                    break;
                }
            }
        }
        assert!(Instant::now() < deadline);
    }
}
