//! The embedded API: a service links the dataplane and calls `get`/`set`/`delete` from its own
//! threads. Each call goes to the worker core that owns the key over that core's bounded queue —
//! no network hop — and waits for the reply. Many service threads may call at once; each call
//! costs one queue handoff each way plus whatever the key's path costs (no round trip for a
//! cached value).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use crate::kn::engine::{Command, EngineError, Reply, SetCond};
use crate::kn::node::KnNode;
use crate::kn::routing::Route;
use crate::kn::shared::{Inbound, Shared};

/// How long a call waits for a full queue to take it before it reports the core busy.
pub const SUBMIT_WAIT: Duration = Duration::from_secs(5);
/// How long a call waits for its reply.
pub const REPLY_WAIT: Duration = Duration::from_secs(60);

/// Why an embedded call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the store is stopped")]
    Stopped,
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("unexpected reply {0:?}")]
    Unexpected(String),
    /// The key's slot is served elsewhere (or by nobody, `owner: None`).
    #[error("slot {slot} of the key is served by {}", .owner.as_deref().unwrap_or("no core"))]
    Moved {
        slot: dinomo_control::Slot,
        owner: Option<String>,
    },
}

/// A handle service threads use; cheap to clone.
#[derive(Clone)]
pub struct StoreHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle")
            .field("cores", &self.shared.cores())
            .finish()
    }
}

impl StoreHandle {
    pub fn new(node: &KnNode) -> StoreHandle {
        StoreHandle {
            shared: Arc::clone(node.shared()),
        }
    }

    /// Hands one single-key command to the key's owner core; its reply arrives on the returned
    /// channel. Several may be outstanding at once (the caller bounds how many).
    pub fn submit(&self, cmd: Command) -> Result<crossbeam_channel::Receiver<Reply>, StoreError> {
        if self.shared.stopping() {
            return Err(StoreError::Stopped);
        }
        let routing = self.shared.routing();
        let core = match routing.route(cmd.key()) {
            (_, Route::Local(core)) => usize::from(core),
            (slot, Route::Remote(_) | Route::Unowned) => {
                return Err(StoreError::Moved {
                    slot,
                    owner: routing.address(slot).map(str::to_owned),
                });
            }
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut message = Inbound::Embedded { cmd, reply: tx };
        let deadline = Instant::now() + SUBMIT_WAIT;
        loop {
            match self.shared.send(core, message) {
                Ok(()) => break,
                Err(m) => {
                    if Instant::now() >= deadline || self.shared.stopping() {
                        return Err(StoreError::Engine(EngineError::Busy));
                    }
                    message = m;
                    std::thread::yield_now();
                }
            }
        }
        Ok(rx)
    }

    /// Waits for the reply of a submitted command.
    pub fn wait(&self, rx: &crossbeam_channel::Receiver<Reply>) -> Result<Reply, StoreError> {
        match rx.recv_timeout(REPLY_WAIT) {
            Ok(Reply::Error(e)) => Err(StoreError::Engine(e)),
            Ok(Reply::Moved(slot)) => Err(StoreError::Moved {
                slot,
                owner: self.shared.routing().address(slot).map(str::to_owned),
            }),
            Ok(reply) => Ok(reply),
            Err(RecvTimeoutError::Timeout) => Err(StoreError::Timeout(REPLY_WAIT)),
            Err(RecvTimeoutError::Disconnected) => Err(StoreError::Stopped),
        }
    }

    /// Runs one single-key command on the key's owner core and waits for its reply.
    pub fn execute(&self, cmd: Command) -> Result<Reply, StoreError> {
        let rx = self.submit(cmd)?;
        self.wait(&rx)
    }

    /// The `INFO` text of the node (sections as for the RESP command).
    pub fn info(&self, sections: &[&str]) -> String {
        let sections: Vec<Vec<u8>> = sections.iter().map(|s| s.as_bytes().to_vec()).collect();
        crate::kn::info::info_text(&self.shared, &sections, 0)
    }

    /// The key's value.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.execute(Command::Get { key: key.to_vec() })? {
            Reply::Value(v) => Ok(v),
            other => Err(StoreError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Stores the value; durable (per the node's durability setting) when this returns.
    pub fn set(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        match self.execute(Command::Set {
            key: key.to_vec(),
            value: value.to_vec(),
            cond: SetCond::Always,
            get: false,
        })? {
            Reply::Ok => Ok(()),
            other => Err(StoreError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Deletes the key; returns whether it existed.
    pub fn delete(&self, key: &[u8]) -> Result<bool, StoreError> {
        match self.execute(Command::Del { key: key.to_vec() })? {
            Reply::Int(n) => Ok(n > 0),
            other => Err(StoreError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Whether the key exists.
    pub fn exists(&self, key: &[u8]) -> Result<bool, StoreError> {
        match self.execute(Command::Exists { key: key.to_vec() })? {
            Reply::Int(n) => Ok(n > 0),
            other => Err(StoreError::Unexpected(format!("{other:?}"))),
        }
    }
}
