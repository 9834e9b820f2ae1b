//! A whole KN with its Redis endpoint, driven by a real Redis client (the `redis` crate) and by
//! raw sockets: commands, pipelining, RESP3, binary data, large values, AUTH, bad input, and
//! the embedded API from several threads.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use dinomo_dataplane::kn::embedded::StoreHandle;
use dinomo_testkit::kn::*;

fn client(addr: std::net::SocketAddr, extra: &str) -> redis::Connection {
    let url = format!("redis://{}{}", addr, extra);
    redis::Client::open(url)
        .expect("url")
        .get_connection()
        .expect("connect")
}

#[test]
fn basic_commands_through_a_redis_client() {
    let mn = memnode(64 << 20, 256 << 10);
    let node = kn(&mn, kn_options(2));
    let mut con = client(node.base_addr().expect("base"), "");
    let _: () = redis::cmd("SET")
        .arg("a")
        .arg("1")
        .query(&mut con)
        .expect("set");
    let v: Option<String> = redis::cmd("GET").arg("a").query(&mut con).expect("get");
    assert_eq!(v.as_deref(), Some("1"));
    let _: () = redis::cmd("MSET")
        .arg("b")
        .arg("2")
        .arg("c")
        .arg("3")
        .query(&mut con)
        .expect("mset");
    let vs: Vec<Option<String>> = redis::cmd("MGET")
        .arg("a")
        .arg("b")
        .arg("nope")
        .arg("c")
        .query(&mut con)
        .expect("mget");
    assert_eq!(
        vs,
        vec![Some("1".into()), Some("2".into()), None, Some("3".into())]
    );
    let n: i64 = redis::cmd("DEL")
        .arg("a")
        .arg("nope")
        .arg("b")
        .query(&mut con)
        .expect("del");
    assert_eq!(n, 2);
    let n: i64 = redis::cmd("EXISTS")
        .arg("a")
        .arg("c")
        .arg("c")
        .query(&mut con)
        .expect("exists");
    assert_eq!(n, 2);
    let pong: String = redis::cmd("PING").query(&mut con).expect("ping");
    assert_eq!(pong, "PONG");
    let nx: Option<String> = redis::cmd("SET")
        .arg("c")
        .arg("9")
        .arg("NX")
        .query(&mut con)
        .expect("set nx");
    assert_eq!(nx, None);
    // Unknown commands and wrong arity are errors, and the connection keeps working.
    let err = redis::cmd("NOSUCH")
        .arg("x")
        .query::<()>(&mut con)
        .expect_err("unknown");
    assert!(err.to_string().contains("unknown command"), "{err}");
    let err = redis::cmd("GET").query::<()>(&mut con).expect_err("arity");
    assert!(
        err.to_string().contains("wrong number of arguments"),
        "{err}"
    );
    let info: String = redis::cmd("INFO")
        .arg("dinomo")
        .query(&mut con)
        .expect("info");
    assert!(
        info.contains("round_trips:") && info.contains("hits_value:"),
        "{info}"
    );
    let slots: redis::Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query(&mut con)
        .expect("cluster slots");
    assert!(
        matches!(slots, redis::Value::Array(ref v) if v.len() == 2),
        "two cores, two ranges: {slots:?}"
    );
    node.stop().expect("stop");
}

#[test]
fn pipelines_binary_data_and_large_values() {
    let mn = memnode(128 << 20, 4 << 20);
    let node = kn(&mn, kn_options(2));
    let mut con = client(node.core_addrs()[0], "");
    let mut pipe = redis::pipe();
    for i in 0..2000u32 {
        let key = [b"bin\0\xff".as_slice(), &i.to_le_bytes()].concat();
        let value: Vec<u8> = (0..(i % 300)).map(|j| (j ^ i) as u8).collect();
        pipe.cmd("SET").arg(key).arg(value).ignore();
    }
    pipe.query::<()>(&mut con).expect("pipelined sets");
    let mut pipe = redis::pipe();
    for i in 0..2000u32 {
        pipe.cmd("GET")
            .arg([b"bin\0\xff".as_slice(), &i.to_le_bytes()].concat());
    }
    let got: Vec<Vec<u8>> = pipe.query(&mut con).expect("pipelined gets");
    for (i, v) in got.iter().enumerate() {
        let want: Vec<u8> = (0..(i as u32 % 300))
            .map(|j| (j ^ i as u32) as u8)
            .collect();
        assert_eq!(v, &want, "key {i}");
    }
    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .query(&mut con)
        .expect("set 1 MiB");
    // Read it back through the other core's port (the key may live on either).
    let mut other = client(node.core_addrs()[1], "");
    let back: Vec<u8> = redis::cmd("GET")
        .arg("big")
        .query(&mut other)
        .expect("get 1 MiB");
    assert_eq!(back, big);
    node.stop().expect("stop");
}

#[test]
fn resp3_through_hello() {
    let mn = memnode(32 << 20, 256 << 10);
    let node = kn(&mn, kn_options(1));
    let mut con = client(node.base_addr().expect("base"), "/?protocol=resp3");
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut con)
        .expect("set");
    let v: redis::Value = redis::cmd("GET")
        .arg("missing")
        .query(&mut con)
        .expect("get");
    assert_eq!(v, redis::Value::Nil);
    let v: String = redis::cmd("GET").arg("k").query(&mut con).expect("get");
    assert_eq!(v, "v");
    node.stop().expect("stop");
}

#[test]
fn auth_on_and_off() {
    let mn = memnode(32 << 20, 256 << 10);
    let node = kn(&mn, kn_options(1));
    // Without a password configured, commands work and AUTH is an error.
    let mut open = client(node.base_addr().expect("base"), "");
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut open)
        .expect("set");
    assert!(redis::cmd("AUTH").arg("x").query::<()>(&mut open).is_err());
    node.stop().expect("stop");

    let mut options = kn_options(1);
    options.requirepass = Some(b"s3cret".to_vec());
    let node = kn(&mn, options);
    let addr = node.base_addr().expect("base");
    let url = format!("redis://{addr}");
    let mut anonymous = redis::Client::open(url)
        .expect("url")
        .get_connection()
        .expect("connect");
    let err = redis::cmd("GET")
        .arg("k")
        .query::<()>(&mut anonymous)
        .expect_err("needs auth");
    assert!(err.to_string().contains("NOAUTH"), "{err}");
    let mut authed = redis::Client::open(format!("redis://:s3cret@{addr}"))
        .expect("url")
        .get_connection()
        .expect("connect");
    let v: Option<String> = redis::cmd("GET").arg("k").query(&mut authed).expect("get");
    assert_eq!(
        v.as_deref(),
        Some("v"),
        "the data survived the node restart"
    );
    let bad = redis::Client::open(format!("redis://:wrong@{addr}"))
        .expect("url")
        .get_connection();
    assert!(bad.is_err(), "a wrong password is refused");
    node.stop().expect("stop");
}

fn raw(addr: std::net::SocketAddr, send: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(send).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn bad_input_gets_an_error_and_others_keep_working() {
    let mn = memnode(32 << 20, 256 << 10);
    let node = kn(&mn, kn_options(2));
    let addr = node.base_addr().expect("base");
    let mut good = client(addr, "");
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut good)
        .expect("set");
    // Malformed multibulk: an error reply, then the server closes the connection.
    let out = raw(addr, b"*2\r\n$3\r\nGET\r\n$x\r\n");
    assert_eq!(out, b"-ERR Protocol error: invalid bulk length\r\n");
    // An oversized bulk length is refused the same way.
    let out = raw(addr, b"*2\r\n$3\r\nGET\r\n$99999999999\r\n");
    assert!(
        out.starts_with(b"-ERR Protocol error"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // A client that sends half a request and disappears.
    {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nz\r\n$5\r\nhel")
            .expect("write");
    }
    // A client that pipelines many requests and disappears without reading a reply.
    {
        let mut s = TcpStream::connect(addr).expect("connect");
        for _ in 0..100 {
            s.write_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
                .expect("write");
        }
    }
    let v: Option<String> = redis::cmd("GET").arg("k").query(&mut good).expect("get");
    assert_eq!(v.as_deref(), Some("v"));
    let z: Option<String> = redis::cmd("GET").arg("z").query(&mut good).expect("get");
    assert_eq!(z, None, "a half-sent request never executes");
    node.stop().expect("stop");
}

#[test]
fn embedded_api_from_many_threads() {
    let mn = memnode(64 << 20, 256 << 10);
    let mut options = kn_options(2);
    options.listen = false;
    let node = kn(&mn, options);
    let store = StoreHandle::new(&node);
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..500u32 {
                    let key = format!("t{t}:{i}");
                    store.set(key.as_bytes(), &i.to_le_bytes()).expect("set");
                    assert_eq!(
                        store.get(key.as_bytes()).expect("get"),
                        Some(i.to_le_bytes().to_vec())
                    );
                }
                for i in (0..500u32).step_by(2) {
                    assert!(
                        store
                            .delete(format!("t{t}:{i}").as_bytes())
                            .expect("delete")
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    for t in 0..4u32 {
        for i in 0..500u32 {
            let present = store
                .exists(format!("t{t}:{i}").as_bytes())
                .expect("exists");
            assert_eq!(present, i % 2 == 1);
        }
    }
    node.stop().expect("stop");
}

#[test]
fn connections_beyond_the_limit_are_refused() {
    let mn = memnode(32 << 20, 256 << 10);
    let mut options = kn_options(1);
    options.connections_max = 2;
    let node = kn(&mn, options);
    let addr = node.base_addr().expect("base");
    let mut first = client(addr, "");
    let mut second = client(addr, "");
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut first)
        .expect("first works");
    let _: String = redis::cmd("PING").query(&mut second).expect("second works");
    let mut third = TcpStream::connect(addr).expect("the kernel accepts");
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = third.write_all(b"PING\r\n");
    let mut buf = [0u8; 16];
    assert!(
        matches!(third.read(&mut buf), Ok(0) | Err(_)),
        "the third connection is closed unanswered"
    );
    let v: Option<String> = redis::cmd("GET")
        .arg("k")
        .query(&mut first)
        .expect("the others keep working");
    assert_eq!(v.as_deref(), Some("v"));
    drop(second);
    node.stop().expect("stop");
}
