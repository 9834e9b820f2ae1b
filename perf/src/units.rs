//! Counts as people type them on the command line, and sizes and durations formatted for the
//! terminal and for server command templates. Sizes and durations are parsed by the library
//! ([`dinomo_dataplane::units`]: `8M` = `8MB` = `8MiB`, `1.6us`), as the `dinomo` binary parses
//! them.
//!
//! Counts ([`parse_count`]): `100000`, `100_000`, `100k`, `2.5M`, `1G` (powers of 1000), or
//! `1e6`. Fractions are allowed when the result is whole. Empty, negative and overflowing input is
//! a [`UnitError`]; no input panics.

use std::time::Duration;

use dinomo_dataplane::units::{UnitError, parse_scaled};

/// Parses a count: an integer, optionally with `_` separators, a `k`/`M`/`G` suffix (powers of
/// 1000) or an exponent (`1e6`).
pub fn parse_count(text: &str) -> Result<u64, UnitError> {
    parse_scaled("count", text, |suffix| match suffix {
        "" => Ok(1),
        "k" | "K" => Ok(1_000),
        "M" => Ok(1_000_000),
        "G" => Ok(1_000_000_000),
        _ => {
            let exponent = suffix
                .strip_prefix(['e', 'E'])
                .ok_or("the suffix is not one of k, M, G")?;
            let exponent: u32 = exponent.parse().map_err(|_| "the exponent is malformed")?;
            10u64.checked_pow(exponent).ok_or("it is too large")
        }
    })
}

/// Formats a duration exactly, in the largest of `s`, `ms`, `us`, `ns` that keeps it whole
/// (`1600ns`, `5us`, `0ns`). This is the form a `{rtt}` placeholder takes in a server command.
pub fn format_duration_exact(duration: Duration) -> String {
    let ns = duration.as_nanos();
    if ns == 0 {
        return "0ns".to_owned();
    }
    for (scale, unit) in [(1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us")] {
        if ns.is_multiple_of(scale) {
            return format!("{}{unit}", ns / scale);
        }
    }
    format!("{ns}ns")
}

/// Formats a byte count in the largest binary unit that keeps three significant digits
/// (`64.0 MiB`), for the terminal.
pub fn format_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use dinomo_dataplane::units::parse_duration;

    use super::*;

    #[test]
    fn counts() {
        assert_eq!(parse_count("100000").unwrap(), 100_000);
        assert_eq!(parse_count("100_000").unwrap(), 100_000);
        assert_eq!(parse_count("100k").unwrap(), 100_000);
        assert_eq!(parse_count("2.5M").unwrap(), 2_500_000);
        assert_eq!(parse_count("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_count("1e6").unwrap(), 1_000_000);
        assert_eq!(parse_count("2.5e3").unwrap(), 2_500);
        for bad in ["", "-5", "1.5", "1e", "1e99", "10x", "1m", "e5"] {
            assert!(parse_count(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn exact_duration_format_round_trips() {
        for (duration, text) in [
            (Duration::ZERO, "0ns"),
            (Duration::from_nanos(1600), "1600ns"),
            (Duration::from_micros(5), "5us"),
            (Duration::from_millis(3), "3ms"),
            (Duration::from_secs(2), "2s"),
        ] {
            assert_eq!(format_duration_exact(duration), text);
            assert_eq!(parse_duration(text).unwrap(), duration);
        }
    }

    #[test]
    fn byte_format() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(64 << 20), "64.0 MiB");
        assert_eq!(format_bytes(3 << 29), "1.5 GiB");
    }
}
