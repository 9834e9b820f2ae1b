//! Test support shared by the integration tests of every dinomo crate, so that each piece is
//! written once:
//!
//! - [`dir`]: [`TempDir`], a scratch directory removed on drop (and a token file in it).
//! - [`process`]: [`Program`] and [`Proc`], a child process of a built binary started on
//!   `127.0.0.1:0` whose announced address is read from its stdout (`listening on <addr>`), its
//!   stderr collected and echoed when a test fails, killed when its handle drops.
//! - [`mn`]: [`MemMn`], a memory node on an in-memory pool served over the local fabric; the map
//!   that gives one incarnation every chain ([`map_of_every_chain`], [`claim_every_chain`]); and
//!   [`ChainWriter`], which commits log batches the way a KN does.
//! - [`kn`]: KN engines and whole nodes on a [`MemMn`], and running commands through an engine.
//!
//! Deadlines ([`HANG`]) only turn a hang into a failure: nothing here depends on timing.

#![forbid(unsafe_code)]

pub mod dir;
pub mod kn;
pub mod mn;
pub mod process;

use std::time::Duration;

use dinomo_control::Incarnation;

pub use dir::TempDir;
pub use mn::{ChainWriter, MemMn, claim_every_chain, map_of_every_chain};
pub use process::{Proc, Program};

/// Deadline that turns a hung child, wait or request into a failure.
pub const HANG: Duration = Duration::from_secs(30);
/// The cluster token of the tests' memory nodes.
pub const TOKEN: &str = "memnode-test-token";
/// The incarnation the tests' connections, writers and engines say hello as; the map
/// [`claim_every_chain`] stores gives it every chain.
pub const INCARNATION: Incarnation = Incarnation(0x7e57_0001);
