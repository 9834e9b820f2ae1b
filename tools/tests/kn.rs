//! `dinomo kn` against a separate `dinomo memnode` process over the tcp fabric: two real
//! processes, a Redis client, a restart of the KN with its data still there.

use dinomo_testkit::process::start_memnode;
use dinomo_testkit::{Proc, Program, TempDir};

/// The binary under test.
const DINOMO: Program = Program(env!("CARGO_BIN_EXE_dinomo"));

fn kn(dir: &TempDir, mn: &Proc, cores: &str) -> Proc {
    let addr = mn.addr().to_string();
    let token = dir.path("token");
    DINOMO.start(
        "kn",
        &[
            "--memnode",
            &addr,
            "--token-file",
            token.to_str().expect("utf-8"),
            "--port",
            "0",
            "--cores",
            cores,
            "--no-pin",
        ],
    )
}

#[test]
fn a_kn_serves_clients_from_a_remote_memory_node() {
    let dir = TempDir::new("kn-remote");
    let mn = start_memnode(DINOMO, &dir);
    let mut node = kn(&dir, &mn, "2");
    let mut con = redis::Client::open(format!("redis://{}", node.addr()))
        .expect("url")
        .get_connection()
        .expect("connect");
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("SET")
            .arg(format!("k{i}"))
            .arg(format!("value-{i}"))
            .ignore();
    }
    pipe.query::<()>(&mut con).expect("sets");
    let v: Option<String> = redis::cmd("GET").arg("k123").query(&mut con).expect("get");
    assert_eq!(v.as_deref(), Some("value-123"));
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(&mut con)
        .expect("info");
    assert!(info.contains("fabric:tcp"), "{info}");
    drop(con);
    node.signal("TERM");
    assert!(
        node.wait_exit().success(),
        "clean exit; stderr:\n{}",
        node.stderr()
    );

    // A new KN (one core now) attaches to the same chains: the memory node merges what the old
    // one left, and every key is there.
    let node = kn(&dir, &mn, "1");
    let mut con = redis::Client::open(format!("redis://{}", node.addr()))
        .expect("url")
        .get_connection()
        .expect("connect");
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("GET").arg(format!("k{i}"));
    }
    let values: Vec<Option<String>> = pipe.query(&mut con).expect("gets");
    for (i, v) in values.iter().enumerate() {
        assert_eq!(v.as_deref(), Some(format!("value-{i}").as_str()), "k{i}");
    }
}

#[test]
fn a_kn_without_a_reachable_memory_node_fails_cleanly() {
    let dir = TempDir::new("kn-unreachable");
    let token = dir.token_file();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dinomo"))
        .args([
            "kn",
            "--memnode",
            "127.0.0.1:1",
            "--token-file",
            token.to_str().expect("utf-8"),
            "--port",
            "0",
            "--no-pin",
        ])
        .output()
        .expect("run dinomo");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot start the KVS node"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
