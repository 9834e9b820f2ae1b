//! The `dinomo` command. Subcommands:
//!
//! - `serve`: the all-in-one server — a memory node on a pool file and one KVS node over the
//!   local fabric, in one process ([`serve`]).
//! - `memnode`: the memory node — opens (or creates) a persistent pool, recovers it, and serves
//!   it to KNs over the tcp fabric ([`memnode`]).
//! - `kn`: a KVS node against a separate memory node over the tcp fabric ([`kn`]).
//!
//! Not built yet: `controller` (the multi-KN control plane).
//!
//! Errors end the process with one line on stderr (`dinomo: error: ...`) and a non-zero status;
//! command-line mistakes are reported by the parser with usage hints.
#![forbid(unsafe_code)]

mod kn;
mod knconf;
mod memnode;
mod serve;
mod size;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the workers allocate and free many small objects per request (keys, request
/// state), which it serves from per-thread pages without the glibc allocator's consolidation
/// passes.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// dinomo: a key-value store for disaggregated persistent memory.
#[derive(Debug, Parser)]
#[command(name = "dinomo", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Serve(serve::Args),
    Memnode(memnode::Args),
    Kn(kn::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Memnode(args) => memnode::run(args),
        Command::Kn(args) => kn::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` puts the error and its causes on one line.
            eprintln!("dinomo: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
