//! What an engine is asked and what it answers: single-key [`Command`]s (multi-key commands are
//! split by the session above) and their [`Reply`]s, with the typed [`EngineError`]s a reply can
//! carry. A key whose slot this core does not own is an answer ([`Reply::Moved`]), not an
//! error.

use dinomo_control::Slot;

/// The poster's identifier of a request, returned with its reply.
pub type Tag = u64;

/// When a SET writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCond {
    Always,
    /// NX: only if the key does not exist.
    IfAbsent,
    /// XX: only if the key exists.
    IfPresent,
}

/// A single-key command (multi-key commands are split by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Get {
        key: Vec<u8>,
    },
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
        cond: SetCond,
        get: bool,
    },
    Del {
        key: Vec<u8>,
    },
    Exists {
        key: Vec<u8>,
    },
}

impl Command {
    pub fn key(&self) -> &[u8] {
        match self {
            Command::Get { key }
            | Command::Set { key, .. }
            | Command::Del { key }
            | Command::Exists { key } => key,
        }
    }
    pub(super) fn is_write(&self) -> bool {
        matches!(self, Command::Set { .. } | Command::Del { .. })
    }
    /// Whether the command must read the key before it writes.
    pub(super) fn reads_before_write(&self) -> bool {
        match self {
            Command::Set { cond, get, .. } => *cond != SetCond::Always || *get,
            Command::Del { .. } => true,
            _ => false,
        }
    }
}

/// The answer to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// GET, and SET ... GET (the old value).
    Value(Option<Vec<u8>>),
    /// SET that wrote.
    Ok,
    /// SET NX/XX that did not write.
    NotSet,
    /// DEL and EXISTS of one key: 0 or 1.
    Int(i64),
    /// The key's slot is not this core's: nothing was done; the client should ask the slot's
    /// owner (the session turns this into `-MOVED slot host:port`).
    Moved(Slot),
    Error(EngineError),
}

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("too many requests in flight on this core")]
    Busy,
    #[error("key or value too large: {0}")]
    TooLarge(String),
    #[error("the memory pool is full")]
    PoolFull,
    #[error("this core stopped after a fabric error: {0}")]
    Failed(String),
    #[error("lookup kept racing with index changes")]
    Contended,
}
