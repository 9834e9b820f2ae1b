//! What the driver runs against: the [`Target`] and [`Connection`] traits, and how targets are
//! named and started.
//!
//! A target hands out connections; each connection belongs to the thread that opened it (so a
//! connection need not be `Send`: an in-process KN may hand out handles pinned to its core) and
//! keeps several requests in flight. Replies come back in the order the requests were sent, as on
//! a RESP connection; a target whose replies complete out of order reorders them before handing
//! them out. The driver never has more requests outstanding on a connection than the limit it
//! passed to [`Target::connect`], and a connection refuses to exceed it.
//!
//! Targets:
//! - `resp://HOST:PORT` ([`crate::resp_client`]): any RESP server, dinomo or Redis.
//! - `embedded` ([`crate::embedded`]): the dinomo dataplane linked into this process, started by
//!   [`launch_embedded`] with per-point [`ServerSettings`] for sweeps.
//!
//! A [`Launcher`] starts a target with given [`ServerSettings`] (cache policy and budget, injected
//! round-trip delay, worker cores, durability): the sweeps and `compare` start one per point.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use dinomo_dataplane::cache::Policy;
use dinomo_dataplane::config::Durability;

use crate::info::{DinomoStats, InfoError};
use crate::resp::RespError;

/// One request of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `GET key`
    Get { key: &'a [u8] },
    /// `SET key value`
    Set { key: &'a [u8], value: &'a [u8] },
}

/// The reply to one request, reduced to what the driver counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A status or integer reply (`+OK`, `:1`).
    Done,
    /// A value of `len` bytes.
    Value { len: usize },
    /// No value: the key does not exist.
    Nil,
    /// An error reply; the text is cut to [`crate::constants::ERROR_TEXT_BYTES_MAX`] bytes.
    Error(String),
}

/// Why a target or a connection failed. Error *replies* are not errors of this kind: they are
/// [`Reply::Error`] values, counted as failed operations.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{text:?} is not a target: use `embedded` or `resp://HOST:PORT`")]
    Unknown { text: String },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("I/O error on the connection to {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} closed the connection with {in_flight} requests outstanding")]
    Closed { addr: String, in_flight: usize },
    #[error("no reply from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("bad reply from {addr}: {source}")]
    Protocol { addr: String, source: RespError },
    #[error("{addr} sent {reply} to {command}")]
    UnexpectedReply {
        addr: String,
        command: &'static str,
        reply: String,
    },
    #[error("bad INFO reply from {addr}: {source}")]
    Info { addr: String, source: InfoError },
    #[error("{in_flight} requests are outstanding, the connection's limit")]
    InFlightFull { in_flight: usize },
    #[error("the target cannot apply {setting}: {reason}")]
    SettingUnsupported {
        setting: &'static str,
        reason: String,
    },
}

/// Something the driver runs against.
pub trait Target: Sync {
    /// How reports name the target: `resp://127.0.0.1:6379`, `embedded`.
    fn label(&self) -> String;

    /// Opens a connection for the calling thread that keeps at most `in_flight_max` requests
    /// outstanding.
    fn connect(&self, in_flight_max: usize) -> Result<Box<dyn Connection + '_>, TargetError>;

    /// dinomo's counters as they are now, or `None` when the target does not report them (Redis).
    /// The driver reads them before and after the run phase and reports the difference.
    fn stats(&self) -> Result<Option<DinomoStats>, TargetError>;

    /// What the server says it is (`redis_version 7.0.15`), if it says.
    fn server_version(&self) -> Result<Option<String>, TargetError> {
        Ok(None)
    }

    /// The command line the target's server was started with, when the bench started it.
    fn started_with(&self) -> Option<String> {
        None
    }
}

/// One connection to a target, used by one thread.
pub trait Connection {
    /// Queues a request; it may not reach the target before [`Connection::flush`]. Fails with
    /// [`TargetError::InFlightFull`] when the connection's limit is reached.
    fn send(&mut self, command: Command<'_>) -> Result<(), TargetError>;

    /// Sends every queued request.
    fn flush(&mut self) -> Result<(), TargetError>;

    /// Waits until at least one reply is there, then appends up to `max` replies to `replies` in
    /// the order their requests were sent, and returns how many. Returns 0 at once when no request
    /// is outstanding.
    fn recv(&mut self, replies: &mut Vec<Reply>, max: usize) -> Result<usize, TargetError>;

    /// Requests sent (or queued) and not yet answered.
    fn in_flight(&self) -> usize;
}

/// How a target is named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// The dinomo dataplane in this process.
    Embedded,
    /// A RESP server at `host:port`, as typed (resolved when connecting).
    Resp { host: String, port: u16 },
}

impl TargetSpec {
    /// The socket address of a RESP target, resolving host names.
    pub fn resolve(host: &str, port: u16) -> Result<SocketAddr, TargetError> {
        use std::net::ToSocketAddrs;
        let text = format!("{host}:{port}");
        let connect = |source| TargetError::Connect {
            addr: text.clone(),
            source,
        };
        (host, port)
            .to_socket_addrs()
            .map_err(connect)?
            .next()
            .ok_or_else(|| {
                connect(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the host name resolves to no address",
                ))
            })
    }
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetSpec::Embedded => f.write_str("embedded"),
            TargetSpec::Resp { host, port } if host.contains(':') => {
                write!(f, "resp://[{host}]:{port}")
            }
            TargetSpec::Resp { host, port } => write!(f, "resp://{host}:{port}"),
        }
    }
}

impl FromStr for TargetSpec {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let unknown = || TargetError::Unknown {
            text: text.to_owned(),
        };
        let trimmed = text.trim();
        if trimmed == "embedded" {
            return Ok(TargetSpec::Embedded);
        }
        let rest = trimmed.strip_prefix("resp://").ok_or_else(unknown)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, port) = bracketed.split_once("]:").ok_or_else(unknown)?;
            (host, port)
        } else {
            rest.rsplit_once(':').ok_or_else(unknown)?
        };
        if host.is_empty() || host.contains(['/', '[', ']']) {
            return Err(unknown());
        }
        let port: u16 = port.parse().map_err(|_| unknown())?;
        Ok(TargetSpec::Resp {
            host: host.to_owned(),
            port,
        })
    }
}

/// How a started server is configured. `None` leaves a setting at the server's default. The
/// cache policy and durability are the dataplane's own (for Redis, `memory` is `appendonly no`
/// and `flush` is `appendonly yes` with `appendfsync always`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSettings {
    pub cache_policy: Option<Policy>,
    pub cache_bytes: Option<u64>,
    pub rtt_delay: Option<Duration>,
    pub cores: Option<usize>,
    pub durability: Option<Durability>,
}

impl ServerSettings {
    /// Whether no setting is given.
    pub fn is_default(&self) -> bool {
        *self == ServerSettings::default()
    }

    /// The names of the settings that are given, for error messages.
    pub fn given(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        if self.cache_policy.is_some() {
            given.push("cache policy");
        }
        if self.cache_bytes.is_some() {
            given.push("cache bytes");
        }
        if self.rtt_delay.is_some() {
            given.push("round-trip delay");
        }
        if self.cores.is_some() {
            given.push("cores");
        }
        if self.durability.is_some() {
            given.push("durability");
        }
        given
    }
}

/// A target started with given settings; dropping it stops whatever was started.
pub type Launched = Box<dyn Target>;

/// Starts targets with given settings, one per sweep point or per side of `compare`.
pub trait Launcher {
    /// How reports name what is launched (`resp: dinomo serve --port {port} ...`, `embedded`).
    fn label(&self) -> String;

    /// Starts a target configured with `settings`.
    fn launch(&self, settings: &ServerSettings) -> Result<Launched, crate::BenchError>;
}

/// Starts an in-process KN (and its memory node on the `local` fabric) configured with `settings`
/// and returns it as a [`Target`].
pub fn launch_embedded(settings: &ServerSettings) -> Result<Launched, TargetError> {
    Ok(Box::new(crate::embedded::start(settings)?))
}

/// Launches the embedded target.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmbeddedLauncher;

impl Launcher for EmbeddedLauncher {
    fn label(&self) -> String {
        "embedded".to_owned()
    }

    fn launch(&self, settings: &ServerSettings) -> Result<Launched, crate::BenchError> {
        Ok(launch_embedded(settings)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names() {
        assert_eq!(
            "embedded".parse::<TargetSpec>().unwrap(),
            TargetSpec::Embedded
        );
        assert_eq!(
            "resp://127.0.0.1:6379".parse::<TargetSpec>().unwrap(),
            TargetSpec::Resp {
                host: "127.0.0.1".into(),
                port: 6379
            }
        );
        assert_eq!(
            "resp://localhost:7000/".parse::<TargetSpec>().unwrap(),
            TargetSpec::Resp {
                host: "localhost".into(),
                port: 7000
            }
        );
        let v6 = "resp://[::1]:6380".parse::<TargetSpec>().unwrap();
        assert_eq!(
            v6,
            TargetSpec::Resp {
                host: "::1".into(),
                port: 6380
            }
        );
        assert_eq!(v6.to_string(), "resp://[::1]:6380");
        for bad in [
            "",
            "redis://h:1",
            "resp://h",
            "resp://:1",
            "resp://h:99999",
            "resp://h:x",
            "resp://[::1:5",
            "tcp",
        ] {
            assert!(bad.parse::<TargetSpec>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn embedded_target_serves_a_connection() {
        let settings = ServerSettings {
            cores: Some(1),
            cache_bytes: Some(1 << 20),
            ..ServerSettings::default()
        };
        let target = launch_embedded(&settings).expect("embedded node");
        let mut con = target.connect(4).expect("connection");
        con.send(Command::Set {
            key: b"k",
            value: b"value",
        })
        .expect("send");
        con.send(Command::Get { key: b"k" }).expect("send");
        con.send(Command::Get { key: b"absent" }).expect("send");
        let mut replies = Vec::new();
        while replies.len() < 3 {
            con.recv(&mut replies, 3).expect("recv");
        }
        assert_eq!(
            replies,
            vec![Reply::Done, Reply::Value { len: 5 }, Reply::Nil]
        );
        let stats = target
            .stats()
            .expect("stats")
            .expect("dinomo reports its counters");
        assert!(stats.counter("ops").is_some_and(|n| n >= 3), "{stats:?}");
    }
}
