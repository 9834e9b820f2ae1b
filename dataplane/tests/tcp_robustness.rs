//! Robustness of the tcp verbs server against clients that misbehave: no handshake, a wrong
//! token or version, truncated, oversized and garbage frames, clients that vanish mid-request or
//! mid-frame, clients that stop reading, and too many connections. After each, a well-behaved
//! client on another connection still gets correct answers, and the server's counters show the
//! bad connection gone.
//!
//! Timeouts of the servers here are short so that the stall paths run quickly; the tests wait for
//! the outcome itself (a CLOSE frame, a counter), with a generous deadline only against hangs.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use dinomo_dataplane::fabric::tcp::frame::{self, CloseCode, Response};
use dinomo_dataplane::fabric::tcp::{TCP_HANDSHAKE_TIMEOUT_DEFAULT, TcpFabric};
use dinomo_dataplane::fabric::{
    CompletionData, Fabric, PeerId, QueuePair, RpcHandler, Verb, VerbError, WrId, wait_for,
};
use dinomo_dataplane::mn::tcp_server::{TcpServer, TcpServerConfig, TcpServerCounters};
use dinomo_pmem::{MemBackend, PoolOffset, SharedBackend};
use dinomo_testkit::HANG;

const TOKEN: &[u8] = b"robustness-token";
const POOL_BYTES: u64 = 4 << 20;
const SHORT: Duration = Duration::from_millis(300);

/// Holds RPCs named "gate" until opened; echoes everything.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
}

struct Handler(Arc<Gate>);

impl RpcHandler for Handler {
    fn handle(&self, _peer: PeerId, request: &[u8]) -> Vec<u8> {
        if request == b"gate" {
            let mut open = self.0.open.lock().unwrap();
            let deadline = Instant::now() + HANG;
            while !*open && Instant::now() < deadline {
                open = self.0.changed.wait_timeout(open, HANG).unwrap().0;
            }
        }
        request.to_vec()
    }
}

struct Setup {
    server: TcpServer,
    gate: Arc<Gate>,
}

fn start(connections_max: usize) -> Setup {
    // Good clients handshake well within the default; only the test of a missing handshake
    // shortens it, so that a loaded machine cannot make a good client miss it.
    start_with(connections_max, TCP_HANDSHAKE_TIMEOUT_DEFAULT)
}

fn start_with(connections_max: usize, handshake_timeout: Duration) -> Setup {
    let gate = Arc::new(Gate::default());
    let backend: SharedBackend = Arc::new(MemBackend::new(POOL_BYTES));
    let mut config = TcpServerConfig::new("127.0.0.1:0".parse().unwrap(), TOKEN);
    config.connections_max = connections_max;
    config.handshake_timeout = handshake_timeout;
    config.stall_timeout = SHORT;
    let server = TcpServer::start(backend, Some(Arc::new(Handler(Arc::clone(&gate)))), config)
        .expect("start the server");
    Setup { server, gate }
}

fn addr(s: &Setup) -> SocketAddr {
    s.server.local_addr()
}

/// A well-behaved queue pair.
fn good(s: &Setup) -> Box<dyn QueuePair> {
    TcpFabric::new(addr(s), TOKEN)
        .connect()
        .expect("a good client connects")
}

/// Checks that a good queue pair gets correct answers: a write, a read, a CAS and an RPC.
fn check_good(qp: &mut dyn QueuePair, tag: u64) {
    let mut others = Vec::new();
    let at = 1024 + (tag % 64) * 64;
    qp.post_batch(vec![
        (
            WrId(1),
            Verb::Write {
                remote: PoolOffset(at),
                data: tag.to_le_bytes().to_vec(),
                persist: false,
            },
        ),
        (
            WrId(2),
            Verb::Read {
                remote: PoolOffset(at),
                len: 8,
            },
        ),
        (
            WrId(3),
            Verb::Cas {
                remote: PoolOffset(at),
                expected: tag,
                new: tag + 1,
            },
        ),
        (
            WrId(4),
            Verb::Rpc {
                request: tag.to_le_bytes().to_vec(),
            },
        ),
    ])
    .unwrap();
    let mut done = vec![wait_for(qp, WrId(4), &mut others)];
    done.append(&mut others);
    // `wait_for` hands back the completions reaped on the way; collect the rest.
    let deadline = Instant::now() + HANG;
    while done.len() < 4 {
        assert!(Instant::now() < deadline, "timed out: {done:?}");
        qp.poll(&mut done, 4);
    }
    let result = |id: u64| {
        done.iter()
            .find(|c| c.wr == WrId(id))
            .unwrap()
            .result
            .clone()
    };
    assert_eq!(result(1), Ok(CompletionData::None));
    assert_eq!(
        result(2),
        Ok(CompletionData::Bytes(tag.to_le_bytes().to_vec()))
    );
    assert_eq!(result(3), Ok(CompletionData::Word(tag)));
    assert_eq!(
        result(4),
        Ok(CompletionData::Bytes(tag.to_le_bytes().to_vec()))
    );
}

fn raw(s: &Setup) -> TcpStream {
    let stream = TcpStream::connect(addr(s)).unwrap();
    stream.set_read_timeout(Some(HANG)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

fn hello(token: &[u8], version: u16) -> Vec<u8> {
    let mut out = Vec::new();
    frame::put_hello(&mut out, version, token);
    out
}

/// A raw connection that has completed the handshake.
fn authenticated(s: &Setup) -> TcpStream {
    let mut stream = raw(s);
    stream
        .write_all(&hello(TOKEN, frame::PROTOCOL_VERSION))
        .unwrap();
    match read_frame(&mut stream) {
        Some(body) => assert!(matches!(
            frame::decode_response(&body),
            Ok(Response::Welcome {
                region_len: POOL_BYTES,
                ..
            })
        )),
        None => panic!("no WELCOME"),
    }
    stream
}

/// Reads one frame body; None at the end of the stream (or a reset).
fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut prefix = [0u8; 4];
    match stream.read_exact(&mut prefix) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
            ) =>
        {
            return None;
        }
        Err(e) => panic!("reading a frame: {e}"),
    }
    let mut body = vec![0u8; u32::from_le_bytes(prefix) as usize];
    stream.read_exact(&mut body).expect("a whole frame");
    Some(body)
}

/// Reads frames until the server's CLOSE, then expects the end of the stream; returns the code.
fn expect_close(stream: &mut TcpStream) -> CloseCode {
    loop {
        let body = read_frame(stream).expect("a CLOSE frame before the end of the stream");
        if let Ok(Response::Close { code, .. }) = frame::decode_response(&body) {
            let code = CloseCode::from_u8(code).expect("a known close code");
            let mut rest = [0u8; 64];
            match stream.read(&mut rest) {
                Ok(0) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
                other => panic!("after CLOSE the stream should end, got {other:?}"),
            }
            return code;
        }
    }
}

/// Waits until `cond` holds for the server's counters.
fn wait_counters(s: &Setup, what: &str, cond: impl Fn(&TcpServerCounters) -> bool) {
    let deadline = Instant::now() + HANG;
    while !cond(&s.server.counters()) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            s.server.counters()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn verbs_before_the_handshake_are_refused() {
    let s = start(8);
    let mut before = good(&s);
    let mut stream = raw(&s);
    let mut read = Vec::new();
    frame::put_request(
        &mut read,
        WrId(1),
        &Verb::Read {
            remote: PoolOffset(0),
            len: 8,
        },
    );
    stream.write_all(&read).unwrap();
    assert_eq!(expect_close(&mut stream), CloseCode::Unauthenticated);
    check_good(&mut *before, 1);
    check_good(&mut *good(&s), 2);
    assert_eq!(s.server.counters().dropped, 1);
}

#[test]
fn wrong_token_version_and_bad_hello_are_refused() {
    let s = start(8);
    let mut before = good(&s);
    for (bytes, code) in [
        (
            hello(b"robustness-tokeN", frame::PROTOCOL_VERSION),
            CloseCode::Token,
        ),
        (hello(b"", frame::PROTOCOL_VERSION), CloseCode::Token),
        (
            hello(TOKEN, frame::PROTOCOL_VERSION + 1),
            CloseCode::Version,
        ),
        (
            vec![6, 0, 0, 0, frame::kind::HELLO, b'X', b'X', b'X', b'X', 0],
            CloseCode::BadHello,
        ),
    ] {
        let mut stream = raw(&s);
        stream.write_all(&bytes).unwrap();
        assert_eq!(expect_close(&mut stream), code);
    }
    // Through the client: a typed refusal, not a hang or a panic.
    match TcpFabric::new(addr(&s), b"nope".to_vec()).connect() {
        Err(VerbError::Refused(m)) => assert!(m.contains("Token"), "{m}"),
        other => panic!("{other:?}"),
    }
    check_good(&mut *before, 3);
    check_good(&mut *good(&s), 4);
    // The second good client is gone again; the first is the only one left.
    wait_counters(&s, "five drops and one open", |c| {
        c.dropped == 5 && c.open == 1
    });
}

#[test]
fn no_handshake_in_time_is_dropped() {
    let s = start_with(8, SHORT);
    let mut stream = raw(&s);
    // Half a HELLO, then nothing.
    stream
        .write_all(&hello(TOKEN, frame::PROTOCOL_VERSION)[..7])
        .unwrap();
    assert_eq!(expect_close(&mut stream), CloseCode::Timeout);
    check_good(&mut *good(&s), 5);
}

#[test]
fn a_client_stalled_mid_frame_is_dropped_without_holding_up_others() {
    let s = start(8);
    let mut other = good(&s);
    let mut stream = authenticated(&s);
    let mut write = Vec::new();
    frame::put_request(
        &mut write,
        WrId(9),
        &Verb::Write {
            remote: PoolOffset(0),
            data: vec![1; 1000],
            persist: false,
        },
    );
    stream.write_all(&write[..500]).unwrap();
    // While it stalls, the other connection is served.
    check_good(&mut *other, 6);
    assert_eq!(expect_close(&mut stream), CloseCode::Timeout);
    check_good(&mut *other, 7);
    // The half-sent write never reached the pool.
    let mut qp = good(&s);
    let mut others = Vec::new();
    qp.post(
        WrId(1),
        Verb::Read {
            remote: PoolOffset(0),
            len: 8,
        },
    )
    .unwrap();
    let c = wait_for(&mut *qp, WrId(1), &mut others);
    assert_eq!(c.result, Ok(CompletionData::Bytes(vec![0; 8])));
}

#[test]
fn oversized_frames_are_refused() {
    let s = start(8);
    let mut before = good(&s);
    // Before the handshake only a HELLO's size is allowed.
    let mut stream = raw(&s);
    stream.write_all(&(64u32 << 10).to_le_bytes()).unwrap();
    assert_eq!(expect_close(&mut stream), CloseCode::FrameTooLarge);
    // After it, nothing beyond the largest verb.
    let mut stream = authenticated(&s);
    stream
        .write_all(&(frame::FRAME_BODY_BYTES_MAX as u32 + 1).to_le_bytes())
        .unwrap();
    assert_eq!(expect_close(&mut stream), CloseCode::FrameTooLarge);
    let mut stream = authenticated(&s);
    stream.write_all(&u32::MAX.to_le_bytes()).unwrap();
    assert_eq!(expect_close(&mut stream), CloseCode::FrameTooLarge);
    check_good(&mut *before, 8);
}

#[test]
fn garbage_frames_are_refused() {
    let s = start(8);
    let mut before = good(&s);
    let garbage: Vec<Vec<u8>> = vec![
        vec![0, 0, 0, 0],                          // an empty frame
        vec![3, 0, 0, 0, 0x7f, 1, 2],              // an unknown kind
        vec![3, 0, 0, 0, frame::kind::READ, 1, 2], // a READ of the wrong length
        vec![
            18,
            0,
            0,
            0,
            frame::kind::WRITE,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0xff,
        ], // bad flags
        {
            let mut h = Vec::new();
            frame::put_hello(&mut h, frame::PROTOCOL_VERSION, TOKEN);
            h
        }, // a second HELLO
    ];
    for bytes in garbage {
        let mut stream = authenticated(&s);
        stream.write_all(&bytes).unwrap();
        assert_eq!(expect_close(&mut stream), CloseCode::Protocol, "{bytes:?}");
    }
    // Text from another protocol, before the handshake.
    let mut stream = raw(&s);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(expect_close(&mut stream), CloseCode::FrameTooLarge);
    // Random bytes of a plausible length.
    let mut stream = authenticated(&s);
    let mut junk = vec![40, 0, 0, 0];
    junk.extend((0..40u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 0x80));
    stream.write_all(&junk).unwrap();
    assert_eq!(expect_close(&mut stream), CloseCode::Protocol);
    check_good(&mut *before, 9);
    check_good(&mut *good(&s), 10);
}

#[test]
fn clients_vanishing_mid_request_cost_nothing() {
    let s = start(8);
    let mut before = good(&s);
    // Mid-frame: half a large WRITE, then gone.
    {
        let mut stream = authenticated(&s);
        let mut write = Vec::new();
        frame::put_request(
            &mut write,
            WrId(1),
            &Verb::Write {
                remote: PoolOffset(0),
                data: vec![9; 1 << 20],
                persist: true,
            },
        );
        stream.write_all(&write[..300_000]).unwrap();
    }
    // With many large responses unread: the server's sends fail and it lets go.
    {
        let mut stream = authenticated(&s);
        let mut reads = Vec::new();
        for i in 0..64 {
            frame::put_request(
                &mut reads,
                WrId(i),
                &Verb::Read {
                    remote: PoolOffset(0),
                    len: 1 << 20,
                },
            );
        }
        stream.write_all(&reads).unwrap();
    }
    // With an RPC in flight: its reply has nowhere to go and is dropped.
    {
        let mut qp = good(&s);
        qp.post(
            WrId(1),
            Verb::Rpc {
                request: b"gate".to_vec(),
            },
        )
        .unwrap();
        let mut others = Vec::new();
        qp.post(
            WrId(2),
            Verb::Read {
                remote: PoolOffset(0),
                len: 8,
            },
        )
        .unwrap();
        wait_for(&mut *qp, WrId(2), &mut others);
    }
    wait_counters(&s, "only the good client left open", |c| {
        c.open == 1 && c.peer_closed >= 3
    });
    *s.gate.open.lock().unwrap() = true;
    s.gate.changed.notify_all();
    check_good(&mut *before, 11);
    check_good(&mut *good(&s), 12);
    // The vanished half WRITE never reached the pool.
    let mut others = Vec::new();
    before
        .post(
            WrId(7),
            Verb::Read {
                remote: PoolOffset(0),
                len: 8,
            },
        )
        .unwrap();
    let c = wait_for(&mut *before, WrId(7), &mut others);
    assert_eq!(c.result, Ok(CompletionData::Bytes(vec![0; 8])));
}

#[test]
fn a_client_that_stops_reading_is_dropped() {
    let s = start(8);
    let mut before = good(&s);
    let mut stream = authenticated(&s);
    // Ask for far more than the server will queue (and the socket buffers hold), never read.
    let mut reads = Vec::new();
    for i in 0..256 {
        frame::put_request(
            &mut reads,
            WrId(i),
            &Verb::Read {
                remote: PoolOffset(0),
                len: 1 << 20,
            },
        );
    }
    stream.set_write_timeout(Some(HANG)).unwrap();
    // The server stops reading this connection once its output is full, so the write may block
    // until the server drops it; do it on another thread.
    let writer = std::thread::spawn(move || {
        let _ = stream.write_all(&reads);
        stream
    });
    wait_counters(&s, "the stalled reader dropped", |c| {
        c.dropped == 1 && c.open == 1
    });
    check_good(&mut *before, 13);
    drop(writer.join().unwrap());
}

#[test]
fn too_many_connections_are_refused_cleanly() {
    let s = start(3);
    let mut qps: Vec<_> = (0..3).map(|_| good(&s)).collect();
    match TcpFabric::new(addr(&s), TOKEN).connect() {
        Err(VerbError::Refused(m)) => assert!(m.contains("TooManyConnections"), "{m}"),
        other => panic!("a fourth connection should be refused: {other:?}"),
    }
    let mut stream = raw(&s);
    assert_eq!(expect_close(&mut stream), CloseCode::TooManyConnections);
    assert_eq!(s.server.counters().refused, 2);
    for (i, qp) in qps.iter_mut().enumerate() {
        check_good(&mut **qp, 20 + i as u64);
    }
    // A slot freed is a slot to use again.
    qps.pop();
    wait_counters(&s, "a slot freed", |c| c.open == 2);
    let mut again = good(&s);
    check_good(&mut *again, 30);
}

#[test]
fn shutdown_is_clean_with_connections_open() {
    let s = start(8);
    let mut qp = good(&s);
    check_good(&mut *qp, 40);
    let _half = authenticated(&s);
    let Setup { server, gate } = s;
    server.shutdown();
    *gate.open.lock().unwrap() = true;
    let mut others = Vec::new();
    match qp.post(
        WrId(1),
        Verb::Read {
            remote: PoolOffset(0),
            len: 8,
        },
    ) {
        Ok(()) => {
            let c = wait_for(&mut *qp, WrId(1), &mut others);
            assert!(matches!(c.result, Err(VerbError::Disconnected(_))), "{c:?}");
        }
        Err(e) => assert!(matches!(
            e,
            dinomo_dataplane::fabric::PostError::Disconnected(_)
        )),
    }
}
