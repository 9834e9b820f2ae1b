//! The settings of a KVS node, shared by `dinomo serve` and `dinomo kn`: command-line flags,
//! the same keys in an optional TOML file (`--config`), and the defaults. A flag beats the file,
//! which beats the default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use dinomo_dataplane::cache::Policy;
use dinomo_dataplane::config::Durability;
use dinomo_dataplane::kn::constants::{BATCH_BYTES_MAX_DEFAULT, BATCH_DELAY_DEFAULT};
use dinomo_dataplane::kn::node::CONNECTIONS_MAX_DEFAULT;
use dinomo_dataplane::resp::Limits;
use dinomo_dataplane::units::{parse_duration, parse_size};
use serde::Deserialize;

use crate::named;

/// Default client port; each core listens on the ports after it.
pub const PORT_DEFAULT: u16 = 7379;
/// Default cache budget of the whole node (split evenly over its cores).
pub const CACHE_BYTES_DEFAULT: &str = "256MiB";
/// Largest bulk string (value) a client may send by default.
pub const BULK_BYTES_DEFAULT: &str = "16MiB";
/// Most worker cores.
pub const CORES_MAX: usize = 64;
/// Longest batch delay or injected round-trip delay.
pub const DELAY_MAX: Duration = Duration::from_secs(3600);

/// Flags of a KVS node (every one optional: unset ones come from --config or the defaults).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KnFlags {
    /// TOML file with any of these settings (keys as the flags, with underscores).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
    /// Client port; core i also listens on port+1+i [default: 7379].
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Worker cores [default: half the CPUs, at least 1].
    #[arg(long, value_name = "N")]
    pub cores: Option<usize>,
    /// Cache budget of the whole node, split over the cores, e.g. 1GiB [default: 256MiB].
    #[arg(long, value_name = "SIZE")]
    pub cache_bytes: Option<String>,
    /// What the cache keeps [default: dac].
    #[arg(long, value_name = "POLICY", value_parser = named::value_parser::<Policy>())]
    pub cache_policy: Option<Policy>,
    /// When a write is acknowledged [default: memory].
    #[arg(long, value_name = "MODE", value_parser = named::value_parser::<Durability>())]
    pub durability: Option<Durability>,
    /// Password clients must give with AUTH (prefer --requirepass-file).
    #[arg(long, value_name = "PASS")]
    pub requirepass: Option<String>,
    /// File holding the AUTH password.
    #[arg(long, value_name = "FILE")]
    pub requirepass_file: Option<PathBuf>,
    /// Most client connections [default: 10000].
    #[arg(long, value_name = "N")]
    pub maxclients: Option<usize>,
    /// Largest value (bulk string) a client may send [default: 16MiB].
    #[arg(long, value_name = "SIZE")]
    pub proto_max_bulk_len: Option<String>,
    /// Largest group-commit batch [default: 1MiB].
    #[arg(long, value_name = "SIZE")]
    pub batch_bytes: Option<String>,
    /// Longest wait of a write for its batch to fill when input keeps coming [default: 200us].
    #[arg(long, value_name = "DURATION")]
    pub batch_delay: Option<String>,
    /// Injected fabric round-trip delay (local fabric only), e.g. 1.6us [default: 0].
    #[arg(long, value_name = "DURATION")]
    pub rtt_delay: Option<String>,
    /// Do not pin worker threads to CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// Kernel submission-queue polling for the workers' io_uring (costs a CPU per core).
    #[arg(long)]
    pub sqpoll: bool,
}

/// The same settings as they appear in the TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnFile {
    pub bind: Option<String>,
    pub port: Option<u16>,
    pub cores: Option<usize>,
    pub cache_bytes: Option<String>,
    #[serde(default, deserialize_with = "named::deserialize")]
    pub cache_policy: Option<Policy>,
    #[serde(default, deserialize_with = "named::deserialize")]
    pub durability: Option<Durability>,
    pub requirepass: Option<String>,
    pub requirepass_file: Option<PathBuf>,
    pub maxclients: Option<usize>,
    pub proto_max_bulk_len: Option<String>,
    pub batch_bytes: Option<String>,
    pub batch_delay: Option<String>,
    pub rtt_delay: Option<String>,
    pub no_pin: Option<bool>,
    pub sqpoll: Option<bool>,
    /// Settings of the embedded memory node (`dinomo serve`) or the node's address (`kn`).
    pub dir: Option<PathBuf>,
    pub pool_size: Option<String>,
    pub block_size: Option<String>,
    pub merge_threads: Option<usize>,
    pub memnode: Option<String>,
    pub token_file: Option<PathBuf>,
    pub kn_id: Option<u32>,
}

/// Resolved settings of a KVS node.
#[derive(Debug, Clone)]
pub struct KnSettings {
    pub bind: String,
    pub port: u16,
    pub cores: usize,
    pub cache_bytes: u64,
    pub cache_policy: Policy,
    pub durability: Durability,
    pub requirepass: Option<Vec<u8>>,
    pub maxclients: usize,
    pub limits: Limits,
    pub batch_bytes: u64,
    pub batch_delay: Duration,
    pub rtt_delay: Duration,
    pub pin: bool,
    pub sqpoll: bool,
}

/// Reads the TOML file, if one is named.
pub fn read_file(path: Option<&Path>) -> anyhow::Result<KnFile> {
    let Some(path) = path else {
        return Ok(KnFile::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        // toml's own rendering spans several lines (the source line and a caret); one line is
        // the message and where it is.
        let line = e.span().map_or(String::new(), |span| {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        });
        anyhow!(
            "invalid config file {}: {}{line}",
            path.display(),
            e.message().trim_end()
        )
    })
}

fn size(
    flag: &Option<String>,
    file: &Option<String>,
    default: &str,
    name: &str,
) -> anyhow::Result<u64> {
    let text = flag.as_deref().or(file.as_deref()).unwrap_or(default);
    parse_size(text).map_err(|e| anyhow!("invalid --{name}: {e}"))
}

fn duration(
    flag: &Option<String>,
    file: &Option<String>,
    default: Duration,
    name: &str,
) -> anyhow::Result<Duration> {
    let Some(text) = flag.as_deref().or(file.as_deref()) else {
        return Ok(default);
    };
    let duration = parse_duration(text).map_err(|e| anyhow!("invalid --{name}: {e}"))?;
    if duration > DELAY_MAX {
        bail!("invalid --{name}: '{text}' is out of range (0 to 1 hour)");
    }
    Ok(duration)
}

/// Merges flags, file and defaults, and checks them.
pub fn resolve(flags: &KnFlags, file: &KnFile) -> anyhow::Result<KnSettings> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let cores = flags.cores.or(file.cores).unwrap_or((cpus / 2).max(1));
    if cores == 0 || cores > CORES_MAX {
        bail!("--cores must be 1 to {CORES_MAX}, not {cores}");
    }
    let port = flags.port.or(file.port).unwrap_or(PORT_DEFAULT);
    if port != 0 && u32::from(port) + cores as u32 > u32::from(u16::MAX) {
        bail!("--port {port} leaves no room for {cores} core ports after it");
    }
    let cache_bytes = size(
        &flags.cache_bytes,
        &file.cache_bytes,
        CACHE_BYTES_DEFAULT,
        "cache-bytes",
    )?;
    let bulk = size(
        &flags.proto_max_bulk_len,
        &file.proto_max_bulk_len,
        BULK_BYTES_DEFAULT,
        "proto-max-bulk-len",
    )?;
    let batch_bytes = match flags.batch_bytes.as_deref().or(file.batch_bytes.as_deref()) {
        Some(text) => parse_size(text).map_err(|e| anyhow!("invalid --batch-bytes: {e}"))?,
        None => BATCH_BYTES_MAX_DEFAULT,
    };
    if batch_bytes < 4096 {
        bail!("--batch-bytes must be at least 4KiB");
    }
    let requirepass = match (
        flags.requirepass.as_ref().or(file.requirepass.as_ref()),
        flags
            .requirepass_file
            .as_ref()
            .or(file.requirepass_file.as_ref()),
    ) {
        (Some(p), _) => Some(p.as_bytes().to_vec()),
        (None, Some(path)) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read the password file {}", path.display()))?;
            Some(bytes.trim_ascii().to_vec())
        }
        (None, None) => None,
    };
    if requirepass.as_ref().is_some_and(Vec::is_empty) {
        bail!("the AUTH password must not be empty");
    }
    let limits = Limits {
        bulk_bytes_max: usize::try_from(bulk).unwrap_or(usize::MAX),
        ..Limits::default()
    };
    Ok(KnSettings {
        bind: flags
            .bind
            .clone()
            .or_else(|| file.bind.clone())
            .unwrap_or_else(|| "127.0.0.1".into()),
        port,
        cores,
        cache_bytes,
        cache_policy: flags
            .cache_policy
            .or(file.cache_policy)
            .unwrap_or(Policy::Dac),
        durability: flags
            .durability
            .or(file.durability)
            .unwrap_or(Durability::Memory),
        requirepass,
        maxclients: flags
            .maxclients
            .or(file.maxclients)
            .unwrap_or(CONNECTIONS_MAX_DEFAULT),
        limits,
        batch_bytes,
        batch_delay: duration(
            &flags.batch_delay,
            &file.batch_delay,
            BATCH_DELAY_DEFAULT,
            "batch-delay",
        )?,
        rtt_delay: duration(
            &flags.rtt_delay,
            &file.rtt_delay,
            Duration::ZERO,
            "rtt-delay",
        )?,
        pin: !(flags.no_pin || file.no_pin.unwrap_or(false)),
        sqpoll: flags.sqpoll || file.sqpoll.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> KnFlags {
        KnFlags {
            cores: Some(1),
            ..KnFlags::default()
        }
    }

    #[test]
    fn delays_are_at_most_an_hour() {
        let resolved = |flags: KnFlags| resolve(&flags, &KnFile::default());
        let e = resolved(KnFlags {
            rtt_delay: Some("99999s".into()),
            ..flags()
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid --rtt-delay: '99999s' is out of range (0 to 1 hour)"
        );
        let settings = resolved(KnFlags {
            batch_delay: Some("1h".into()),
            rtt_delay: Some("1.6us".into()),
            ..flags()
        })
        .unwrap();
        assert_eq!(settings.batch_delay, Duration::from_secs(3600));
        assert_eq!(settings.rtt_delay, Duration::from_nanos(1600));
        assert!(
            resolved(KnFlags {
                batch_delay: Some("fast".into()),
                ..flags()
            })
            .is_err()
        );
    }

    #[test]
    fn the_file_names_policy_and_durability_as_the_library_does() {
        let file: KnFile =
            toml::from_str("cache_policy = \"value\"\ndurability = \"flush\"\n").unwrap();
        assert_eq!(file.cache_policy, Some(Policy::ValueOnly));
        assert_eq!(file.durability, Some(Durability::Flush));
        let settings = resolve(&flags(), &file).unwrap();
        assert_eq!(settings.cache_policy, Policy::ValueOnly);
        assert_eq!(settings.durability, Durability::Flush);
        let defaults = resolve(&flags(), &KnFile::default()).unwrap();
        assert_eq!(defaults.cache_policy, Policy::Dac);
        assert_eq!(defaults.durability, Durability::Memory);
        let e = toml::from_str::<KnFile>("durability = \"disk\"\n").unwrap_err();
        assert!(e.to_string().contains("is not a durability"), "{e}");
    }

    #[test]
    fn a_bad_config_file_is_one_line_naming_the_line() {
        let path = std::env::temp_dir().join(format!("dinomo-knconf-{}.toml", std::process::id()));
        std::fs::write(&path, "cores = 2\ndurability = \"disk\"\n").unwrap();
        let e = read_file(Some(&path)).unwrap_err().to_string();
        let _ = std::fs::remove_file(&path);
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(
            e.contains("is not a durability") && e.ends_with("(line 2)"),
            "{e}"
        );
    }

    #[test]
    fn sizes_take_every_spelling_of_a_binary_unit() {
        for text in ["8M", "8MiB", "8MB"] {
            let settings = resolve(
                &KnFlags {
                    cache_bytes: Some(text.into()),
                    ..flags()
                },
                &KnFile::default(),
            )
            .unwrap();
            assert_eq!(settings.cache_bytes, 8 << 20, "{text}");
        }
    }
}
