//! Fabric benchmarks: round-trip latency of one READ (64 B, 1 KiB, 64 KiB) and verbs/s of
//! doorbell batches (1, 8, 32 READs of 64 B) for each backend — `local` without delay, `local`
//! with a 1.6 µs injected round trip, and `tcp` over loopback — plus, in the same run, a plain TCP
//! ping-pong of the same payload sizes between two threads, the floor under the tcp fabric, so that
//! its overhead can be stated as a ratio.
//!
//! Completions are awaited by busy polling, as a worker core does; on a 2-core machine the tcp
//! server's loop thread and the benchmark thread each have a core.

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dinomo_dataplane::fabric::local::{LocalFabric, LocalOptions, RDMA_RTT_TYPICAL};
use dinomo_dataplane::fabric::tcp::TcpFabric;
use dinomo_dataplane::fabric::{Completion, Fabric, QueuePair, Verb, WrId};
use dinomo_dataplane::mn::tcp_server::{TcpServer, TcpServerConfig};
use dinomo_pmem::{MemBackend, PoolOffset, SharedBackend};

const POOL_BYTES: u64 = 1 << 20;
const SIZES: [u32; 3] = [64, 1 << 10, 64 << 10];
const BATCHES: [usize; 3] = [1, 8, 32];
const TOKEN: &[u8] = b"bench-token";

/// One backend under test; keeps its server alive.
struct Backend {
    name: &'static str,
    fabric: Box<dyn Fabric>,
    _server: Option<TcpServer>,
}

fn backends() -> Vec<Backend> {
    let pool = || -> SharedBackend { Arc::new(MemBackend::new(POOL_BYTES)) };
    let server = TcpServer::start(
        pool(),
        None,
        TcpServerConfig::new("127.0.0.1:0".parse().unwrap(), TOKEN),
    )
    .expect("start the tcp server");
    let tcp = TcpFabric::new(server.local_addr(), TOKEN);
    vec![
        Backend {
            name: "local-0",
            fabric: Box::new(LocalFabric::new(pool(), LocalOptions::default())),
            _server: None,
        },
        Backend {
            name: "local-1.6us",
            fabric: Box::new(LocalFabric::new(
                pool(),
                LocalOptions::default().with_rtt(RDMA_RTT_TYPICAL),
            )),
            _server: None,
        },
        Backend {
            name: "tcp",
            fabric: Box::new(tcp),
            _server: Some(server),
        },
    ]
}

/// Busy-polls until `n` completions have arrived.
fn reap(qp: &mut dyn QueuePair, out: &mut Vec<Completion>, n: usize) {
    out.clear();
    while out.len() < n {
        let want = n - out.len();
        if qp.poll(out, want) == 0 {
            std::hint::spin_loop();
        }
    }
    for c in out.iter() {
        assert!(c.result.is_ok(), "{c:?}");
    }
}

fn read_latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_round_trip");
    for backend in backends() {
        let mut qp = backend.fabric.connect().expect("connect");
        let mut out = Vec::with_capacity(64);
        for size in SIZES {
            group.throughput(Throughput::Bytes(u64::from(size)));
            group.bench_function(BenchmarkId::new(backend.name, size), |b| {
                b.iter(|| {
                    qp.post(
                        WrId(0),
                        Verb::Read {
                            remote: PoolOffset(4096),
                            len: size,
                        },
                    )
                    .unwrap();
                    reap(&mut *qp, &mut out, 1);
                    black_box(&out);
                });
            });
        }
    }
    group.finish();
}

fn doorbell_batches(c: &mut Criterion) {
    let mut group = c.benchmark_group("doorbell_64B_reads");
    for backend in backends() {
        let mut qp = backend.fabric.connect().expect("connect");
        let mut out = Vec::with_capacity(64);
        for batch in BATCHES {
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(BenchmarkId::new(backend.name, batch), |b| {
                b.iter(|| {
                    let verbs = (0..batch)
                        .map(|i| {
                            (
                                WrId(i as u64),
                                Verb::Read {
                                    remote: PoolOffset(64 * i as u64),
                                    len: 64,
                                },
                            )
                        })
                        .collect();
                    qp.post_batch(verbs).unwrap();
                    reap(&mut *qp, &mut out, batch);
                    black_box(&out);
                });
            });
        }
    }
    group.finish();
}

/// The floor: a 4-byte request and a reply of `size` bytes between two threads over loopback,
/// blocking sockets with TCP_NODELAY, no framing, no pool.
fn tcp_ping_pong(c: &mut Criterion) {
    let mut group = c.benchmark_group("plain_tcp_ping_pong");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let echo = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_nodelay(true).unwrap();
        let reply = vec![7u8; *SIZES.iter().max().unwrap() as usize];
        let mut request = [0u8; 4];
        while stream.read_exact(&mut request).is_ok() {
            let size = u32::from_le_bytes(request) as usize;
            if stream.write_all(&reply[..size]).is_err() {
                break;
            }
        }
    });
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; *SIZES.iter().max().unwrap() as usize];
    for size in SIZES {
        group.throughput(Throughput::Bytes(u64::from(size)));
        group.bench_function(BenchmarkId::new("loopback", size), |b| {
            b.iter(|| {
                stream.write_all(&size.to_le_bytes()).unwrap();
                stream.read_exact(&mut buf[..size as usize]).unwrap();
                black_box(&buf);
            });
        });
    }
    group.finish();
    drop(stream);
    echo.join().unwrap();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = fabric;
    config = config();
    targets = read_latency, doorbell_batches, tcp_ping_pong
}
criterion_main!(fabric);
