//! Workload generators, the `dinomo-bench` load driver and the benchmark reports of dinomo.
//!
//! - [`workload`]: YCSB-style key and operation generators.
//! - [`target`]: what the driver runs against ([`target::Target`], [`target::Connection`]), and
//!   [`resp_client`], the `resp://` target; [`server`] starts servers from command templates.
//! - [`driver`]: the load phase and the closed-loop run phase; [`bench`] runs both and builds a
//!   [`report::RunReport`] with dinomo's counters from [`info`].
//! - [`sweep`] and [`compare`]: many runs with one fresh server per point, written as one JSON
//!   document each, with SVG plots from [`plot`].
//! - [`cli`]: the command line of `dinomo-bench`.

#![forbid(unsafe_code)]

pub mod bench;
pub mod cli;
pub mod compare;
pub mod constants;
pub mod driver;
pub mod embedded;
pub mod info;
pub mod plot;
pub mod report;
pub mod resp;
pub mod resp_client;
pub mod server;
pub mod sweep;
pub mod target;
pub mod units;
pub mod workload;

use std::path::PathBuf;

/// Every way a benchmark can fail.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Target(#[from] target::TargetError),
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error(transparent)]
    Driver(#[from] driver::DriverError),
    #[error(transparent)]
    Workload(#[from] workload::WorkloadError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot draw {path}: {reason}")]
    Plot { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
}

/// Writes `value` as pretty JSON to `path`, with a trailing newline.
pub fn write_json<T: serde::Serialize>(
    path: &std::path::Path,
    value: &T,
) -> Result<(), BenchError> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    std::fs::write(path, text).map_err(|source| BenchError::Write {
        path: path.to_owned(),
        source,
    })
}
