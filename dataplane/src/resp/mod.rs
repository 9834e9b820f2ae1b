//! RESP2/RESP3 request parsing, reply encoding and the command table of a KN's Redis endpoint.
//!
//! A KN speaks the Redis protocol so that `redis-cli`, `redis-benchmark` and Redis client
//! libraries work unchanged. This module is the protocol layer only; it owns no socket and no
//! store:
//!
//! - [`parse`] turns the bytes a connection has received into requests. It is incremental and
//!   zero-copy: a [`Request`] names its arguments by position in the caller's receive buffer, and
//!   the per-connection [`RequestParser`] remembers how far it got, so bytes that arrive in many
//!   pieces are looked at once.
//! - [`reply`] appends replies to an output buffer in RESP2 or RESP3, chosen per connection by
//!   `HELLO`.
//! - [`commands`] is the command table (name, arity, flags, key positions) with case-insensitive
//!   lookup, the error texts Redis 7 uses for unknown commands and wrong arity, and the `COMMAND`
//!   command, which is answered from the table alone.
//! - [`set`] parses the options of `SET` and [`hello`] those of `HELLO`.
//!
//! Invariants shared by the submodules: no input from a client can make them panic; every
//! buffer and count they hold is bounded by a limit named in [`constants`] (or by the caller's
//! [`Limits`]); error replies carry Redis's exact texts, so clients and their tests that match
//! on them keep working; and nothing here uses `unsafe`.

#![forbid(unsafe_code)]

pub mod commands;
pub mod constants;
pub mod hello;
pub mod parse;
pub mod reply;
pub mod set;

pub use commands::{CommandError, CommandId, CommandSpec, lookup};
pub use parse::{
    Argv, Limits, Parsed, ProtocolError, Request, RequestParser, parse_i64, parse_request,
};
pub use reply::{Protocol, ReplyWriter};
