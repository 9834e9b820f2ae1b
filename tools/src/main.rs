//! The `dinomo` command. Subcommands:
//!
//! - `memnode`: the memory node — opens (or creates) a persistent pool, recovers it, and serves
//!   it to KNs over the tcp fabric ([`memnode`]).
//!
//! Planned, each as a module of its own with an `Args` struct and a `run` function, added as a
//! variant of [`Command`]: `serve` (all-in-one: MN, controller and one KN in one process), `kn`
//! (a KVS node) and `controller`.
//!
//! Errors end the process with one line on stderr (`dinomo: error: ...`) and a non-zero status;
//! command-line mistakes are reported by the parser with usage hints.
#![forbid(unsafe_code)]

mod memnode;
mod size;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// dinomo: a key-value store for disaggregated persistent memory.
#[derive(Debug, Parser)]
#[command(name = "dinomo", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Memnode(memnode::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Memnode(args) => memnode::run(args),
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
