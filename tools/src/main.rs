//! The `dinomo` command: `serve` (all-in-one), `memnode`, `kn`, `controller` and tools.
#![forbid(unsafe_code)]

fn main() -> anyhow::Result<()> {
    anyhow::bail!("dinomo: no subcommand is built yet")
}
