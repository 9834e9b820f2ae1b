//! `dinomo serve` as a real process, driven by a Redis client: it serves, it keeps its data
//! across a clean restart, and when it is SIGKILLed under write load every acknowledged SET is
//! readable after the restart (and nothing half-written ever is).

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dinomo_testkit::{HANG, Proc, Program, TempDir};

/// The binary under test.
const DINOMO: Program = Program(env!("CARGO_BIN_EXE_dinomo"));

fn serve(dir: &TempDir, extra: &[&str]) -> Proc {
    let dir_arg = dir.root().to_str().expect("utf-8 path");
    let mut args = vec![
        "--dir",
        dir_arg,
        "--port",
        "0",
        "--pool-size",
        "64MiB",
        "--block-size",
        "256KiB",
        "--no-pin",
    ];
    args.extend_from_slice(extra);
    DINOMO.start("serve", &args)
}

fn connect(node: &Proc) -> redis::Connection {
    redis::Client::open(format!("redis://{}", node.addr()))
        .expect("url")
        .get_connection()
        .expect("connect")
}

fn value(thread: u32, i: u32) -> Vec<u8> {
    let mut v = format!("t{thread}-i{i}-").into_bytes();
    v.resize(64 + (i as usize * 37) % 700, b'0' + (i % 10) as u8);
    v
}

#[test]
fn serves_clients_and_keeps_data_across_a_clean_restart() {
    let dir = TempDir::new("serve-restart");
    // Flush durability: every batch is flushed (msync of an ordinary file) before it is acknowledged.
    let mut node = serve(&dir, &["--cores", "2", "--durability", "flush"]);
    let mut con = connect(&node);
    let _: () = redis::cmd("SET")
        .arg("greeting")
        .arg("hello")
        .query(&mut con)
        .expect("set");
    let _: () = redis::cmd("MSET")
        .arg("a")
        .arg("1")
        .arg("b")
        .arg("2")
        .query(&mut con)
        .expect("mset");
    let n: i64 = redis::cmd("DEL").arg("b").query(&mut con).expect("del");
    assert_eq!(n, 1);
    drop(con);
    node.signal("TERM");
    assert!(
        node.wait_exit().success(),
        "clean exit; stderr:\n{}",
        node.stderr()
    );
    node.wait_stderr("clean shutdown");

    let node = serve(&dir, &["--cores", "1"]);
    node.wait_stderr("last stop: clean");
    let mut con = connect(&node);
    let v: Option<String> = redis::cmd("GET")
        .arg("greeting")
        .query(&mut con)
        .expect("get");
    assert_eq!(
        v.as_deref(),
        Some("hello"),
        "the value survived a restart with a different core count"
    );
    let vs: Vec<Option<String>> = redis::cmd("MGET")
        .arg("a")
        .arg("b")
        .query(&mut con)
        .expect("mget");
    assert_eq!(vs, vec![Some("1".to_string()), None]);
    let info: String = redis::cmd("INFO")
        .arg("keyspace")
        .query(&mut con)
        .expect("info");
    assert!(info.contains("db0:keys=2"), "{info}");
}

#[test]
fn no_acknowledged_set_is_lost_when_killed_under_load() {
    let dir = TempDir::new("serve-kill");
    let mut node = serve(&dir, &["--cores", "2"]);
    let addr = node.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let acked_total = Arc::new(AtomicUsize::new(0));
    // Each writer overwrites a small set of keys, so recovery must also keep the newest value.
    const KEYS: u32 = 50;
    let writers: Vec<_> = (0..3u32)
        .map(|t| {
            let (stop, acked_total) = (Arc::clone(&stop), Arc::clone(&acked_total));
            std::thread::spawn(move || {
                let mut con = redis::Client::open(format!("redis://{addr}"))
                    .expect("url")
                    .get_connection()
                    .expect("connect");
                let mut acked = 0u32;
                let deadline = Instant::now() + HANG;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let key = format!("t{t}-k{}", acked % KEYS);
                    let r: redis::RedisResult<()> = redis::cmd("SET")
                        .arg(&key)
                        .arg(value(t, acked))
                        .query(&mut con);
                    if r.is_err() {
                        break;
                    }
                    acked += 1;
                    acked_total.fetch_add(1, Ordering::Relaxed);
                }
                acked
            })
        })
        .collect();
    let deadline = Instant::now() + HANG;
    while acked_total.load(Ordering::Relaxed) < 3000 {
        assert!(
            Instant::now() < deadline,
            "the writers made no progress; stderr:\n{}",
            node.stderr()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    node.kill();
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<u32> = writers
        .into_iter()
        .map(|w| w.join().expect("writer"))
        .collect();

    let node = serve(&dir, &["--cores", "2"]);
    node.wait_stderr("last stop: unclean");
    let mut con = connect(&node);
    for (t, &n) in acked.iter().enumerate() {
        let t = t as u32;
        for k in 0..KEYS.min(n) {
            // The last acknowledged write of this key, and the one in flight at the kill.
            let last = (0..n).rev().find(|i| i % KEYS == k).expect("written");
            let in_flight = (n % KEYS == k).then_some(n);
            let got: Option<Vec<u8>> = redis::cmd("GET")
                .arg(format!("t{t}-k{k}"))
                .query(&mut con)
                .expect("get");
            let got = got.expect("an acknowledged key is present");
            assert!(
                got == value(t, last) || in_flight.is_some_and(|i| got == value(t, i)),
                "t{t}-k{k}: got {:?}, expected write {last} (or {in_flight:?})",
                String::from_utf8_lossy(&got[..got.len().min(20)])
            );
        }
    }
}

#[test]
fn a_config_file_sets_the_same_keys_as_the_flags() {
    let dir = TempDir::new("serve-config");
    let config = dir.path("serve.toml");
    std::fs::write(
        &config,
        "cores = 1\nrequirepass = \"s3cret\"\ncache_policy = \"value\"\n",
    )
    .expect("write config");
    let node = serve(&dir, &["--config", config.to_str().expect("utf-8")]);
    let mut anonymous = connect(&node);
    let err = redis::cmd("GET")
        .arg("k")
        .query::<()>(&mut anonymous)
        .expect_err("auth required");
    assert!(err.to_string().contains("NOAUTH"), "{err}");
    let mut authed = redis::Client::open(format!("redis://:s3cret@{}", node.addr()))
        .expect("url")
        .get_connection()
        .expect("connect");
    let info: String = redis::cmd("INFO")
        .arg("dinomo")
        .query(&mut authed)
        .expect("info");
    assert!(info.contains("cache_policy:value"), "{info}");
}

fn failing(args: &[&str]) -> (std::process::ExitStatus, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dinomo"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run dinomo");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_settings_fail_cleanly_and_help_names_the_flags() {
    let dir = TempDir::new("serve-bad");
    let d = dir.root().to_str().expect("utf-8");
    for (args, expected) in [
        (
            vec!["serve", "--dir", d, "--cache-policy", "bogus"],
            "invalid value 'bogus'",
        ),
        (
            vec!["serve", "--dir", d, "--pool-size", "1.5B"],
            "invalid --pool-size",
        ),
        (
            vec!["serve", "--dir", d, "--cores", "0", "--port", "0"],
            "--cores must be",
        ),
        (
            vec!["serve", "--dir", d, "--rtt-delay", "fast", "--port", "0"],
            "invalid --rtt-delay",
        ),
        (
            vec!["serve", "--dir", d, "--config", "/nonexistent/serve.toml"],
            "cannot read the config file",
        ),
    ] {
        let (status, stderr) = failing(&args);
        assert!(!status.success(), "{args:?} should fail");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dinomo"))
        .args(["serve", "--help"])
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--dir",
        "--pool-size",
        "--bind",
        "--port",
        "--cores",
        "--cache-bytes",
        "--cache-policy",
        "--durability",
        "--requirepass",
        "--config",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}
