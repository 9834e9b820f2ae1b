//! One owner per key across processes: several `dinomo kn` processes against one `dinomo
//! memnode`. Until a controller assigns slots, a KN takes every slot for itself, so a second KN
//! must be refused while the first is live — with one line naming it — and may take over once
//! the first is dead, with every write the first acknowledged still there. The same `--kn-id`
//! twice is refused the same way. Each check reads the last acknowledged value of every key
//! after the owner changed or restarted.

use std::collections::BTreeMap;

use dinomo_testkit::process::start_memnode;
use dinomo_testkit::{Proc, Program, TempDir};

/// The binary under test.
const DINOMO: Program = Program(env!("CARGO_BIN_EXE_dinomo"));

/// Keys each phase writes.
const KEYS: usize = 200;

fn kn_args(dir: &TempDir, mn: &Proc, kn_id: &str) -> Vec<String> {
    [
        "--memnode",
        &mn.addr().to_string(),
        "--token-file",
        dir.path("token").to_str().expect("utf-8"),
        "--kn-id",
        kn_id,
        "--port",
        "0",
        "--cores",
        "2",
        "--no-pin",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn kn(dir: &TempDir, mn: &Proc, kn_id: &str) -> Proc {
    let args = kn_args(dir, mn, kn_id);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    DINOMO.start("kn", &args)
}

/// Starts a `dinomo kn` once the memory node has noticed that the node it replaces is gone: it
/// learns that when the dead node's connections close, a moment after the process died. Until
/// then a start is refused with the conflict, which is all this accepts.
fn kn_once_free(dir: &TempDir, mn: &Proc, kn_id: &str) -> Proc {
    let deadline = std::time::Instant::now() + dinomo_testkit::HANG;
    loop {
        let args = kn_args(dir, mn, kn_id);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut node = DINOMO.spawn("kn", &args);
        match node.stdout.recv_timeout(dinomo_testkit::HANG) {
            Ok(line) if line.starts_with("listening on ") => {
                node.set_addr(line.trim_start_matches("listening on "));
                return node;
            }
            _ => {
                let status = node.wait_exit();
                assert_eq!(status.code(), Some(1), "{}", node.stderr());
                assert!(node.stderr().contains("is live"), "{}", node.stderr());
                assert!(
                    std::time::Instant::now() < deadline,
                    "the memory node never noticed the old node's death"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

/// Runs a `dinomo kn` that must be refused; returns its one line of stderr.
fn refused_kn(dir: &TempDir, mn: &Proc, kn_id: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dinomo"))
        .arg("kn")
        .args(kn_args(dir, mn, kn_id))
        .output()
        .expect("run dinomo kn");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "refused with status 1: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "a refused node prints nothing on stdout"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn connect(node: &Proc) -> redis::Connection {
    redis::Client::open(format!("redis://{}", node.addr()))
        .expect("url")
        .get_connection()
        .expect("connect")
}

/// Writes `tag`'s value of every key (each acknowledged when this returns) and records it.
fn write_all(node: &Proc, tag: &str, model: &mut BTreeMap<String, String>) {
    let mut con = connect(node);
    let mut pipe = redis::pipe();
    for i in 0..KEYS {
        let (key, value) = (format!("key:{i}"), format!("{tag}-{i}"));
        pipe.cmd("SET").arg(&key).arg(&value).ignore();
        model.insert(key, value);
    }
    pipe.query::<()>(&mut con)
        .expect("every SET is acknowledged");
}

/// Every key has its last acknowledged value.
fn check_all(node: &Proc, model: &BTreeMap<String, String>) {
    let mut con = connect(node);
    let mut pipe = redis::pipe();
    for key in model.keys() {
        pipe.cmd("GET").arg(key);
    }
    let values: Vec<Option<String>> = pipe.query(&mut con).expect("gets");
    for ((key, expected), got) in model.iter().zip(values) {
        assert_eq!(got.as_deref(), Some(expected.as_str()), "{key}");
    }
}

#[test]
fn a_second_kn_is_refused_while_the_first_lives_and_takes_over_when_it_dies() {
    let dir = TempDir::new("owners-takeover");
    let mn = start_memnode(DINOMO, &dir);
    let mut model = BTreeMap::new();

    let mut first = kn(&dir, &mn, "1");
    write_all(&first, "first", &mut model);
    let why = refused_kn(&dir, &mn, "2");
    assert!(why.contains("kn 1") && why.contains("is live"), "{why}");
    // The refused node changed nothing: the first goes on, and its later writes are the last
    // acknowledged ones.
    write_all(&first, "second", &mut model);
    check_all(&first, &model);

    // The first dies without a word; the second takes every slot and sees every write the
    // first acknowledged.
    first.kill();
    let second = kn_once_free(&dir, &mn, "2");
    check_all(&second, &model);
    write_all(&second, "third", &mut model);

    // Now the first may not come back while the second lives.
    let why = refused_kn(&dir, &mn, "1");
    assert!(why.contains("kn 2") && why.contains("is live"), "{why}");
    check_all(&second, &model);

    // Once the second stops, the first takes over again with the last acknowledged values.
    drop(second);
    let first = kn_once_free(&dir, &mn, "1");
    check_all(&first, &model);
}

#[test]
fn the_same_kn_id_twice_is_refused() {
    let dir = TempDir::new("owners-same-id");
    let mn = start_memnode(DINOMO, &dir);
    let mut model = BTreeMap::new();
    let mut node = kn(&dir, &mn, "1");
    write_all(&node, "before", &mut model);
    let why = refused_kn(&dir, &mn, "1");
    assert!(why.contains("kn 1") && why.contains("is live"), "{why}");
    // The live node's chains were not touched: it keeps writing, and a clean restart finds
    // every last value.
    write_all(&node, "after", &mut model);
    node.signal("TERM");
    assert!(node.wait_exit().success(), "clean exit:\n{}", node.stderr());
    let node = kn_once_free(&dir, &mn, "1");
    check_all(&node, &model);
}

#[test]
fn two_kns_started_at_once_end_with_one_owner() {
    let dir = TempDir::new("owners-race");
    let mn = start_memnode(DINOMO, &dir);
    let start = |kn_id: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dinomo"))
            .arg("kn")
            .args(kn_args(&dir, &mn, kn_id))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn dinomo kn")
    };
    let mut a = start("1");
    let mut b = start("2");
    // Exactly one of them is refused; the other serves until it is stopped.
    let deadline = std::time::Instant::now() + dinomo_testkit::HANG;
    let (loser, mut winner) = loop {
        if let Some(status) = a.try_wait().expect("wait") {
            break ((status, a), b);
        }
        if let Some(status) = b.try_wait().expect("wait") {
            break ((status, b), a);
        }
        assert!(std::time::Instant::now() < deadline, "neither node gave up");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let (status, loser) = loser;
    let stderr = {
        use std::io::Read;
        let mut text = String::new();
        loser
            .stderr
            .expect("piped")
            .read_to_string(&mut text)
            .expect("stderr");
        text
    };
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is live"), "{stderr}");
    assert!(
        winner.try_wait().expect("wait").is_none(),
        "the winner still serves"
    );
    let _ = winner.kill();
    let _ = winner.wait();
}
