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
mod named;
mod serve;

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
            eprintln!("dinomo: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: many errors already print their
/// cause in their own message, and repeating it would only make the line longer.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn one_line_names_each_cause_once() {
        let io = std::io::Error::other("disk on fire");
        let e = anyhow::Error::new(io).context("cannot open the pool");
        assert_eq!(one_line(&e), "cannot open the pool: disk on fire");
        #[derive(Debug)]
        struct Wrapped(std::io::Error);
        impl std::fmt::Display for Wrapped {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "core 0: {}", self.0)
            }
        }
        impl std::error::Error for Wrapped {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = anyhow::Error::new(Wrapped(std::io::Error::other("refused"))).context("start");
        assert_eq!(one_line(&e), "start: core 0: refused");
    }
}
