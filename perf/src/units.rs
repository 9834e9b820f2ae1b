//! Sizes, durations and counts as people type them on the command line.
//!
//! - Sizes: `4096`, `4096B`, `64KiB`/`64MiB`/`1.5GiB`/`1TiB` (powers of 1024) and `64kB`/`64MB`/
//!   `1GB`/`1TB` (powers of 1000). Unit letters are case-insensitive; the `i` decides the base, so
//!   `64mib` is 64 × 2^20 and `64mb` is 64 × 10^6. Fractions are allowed when the result is a whole
//!   number of bytes.
//! - Durations: a number and a unit among `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`; a bare number
//!   is seconds (`--duration 10`). Fractions are allowed (`1.6us`) down to whole nanoseconds.
//! - Counts: `100000`, `100_000`, `100k`, `2.5M`, `1G` (powers of 1000), or `1e6`.
//!
//! Every parser rejects empty, negative, non-finite and overflowing input with a [`UnitError`];
//! none panics on any input.

use std::time::Duration;

/// Why a size, duration or count could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("{text:?} is not a {what}: {reason}")]
    Invalid {
        what: &'static str,
        text: String,
        reason: &'static str,
    },
}

fn invalid(what: &'static str, text: &str, reason: &'static str) -> UnitError {
    UnitError::Invalid {
        what,
        text: text.to_owned(),
        reason,
    }
}

/// Splits `text` into its leading number and the unit that follows it.
fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .map_or(text.len(), |(i, _)| i);
    (&text[..end], text[end..].trim())
}

/// Parses the number part: digits with optional `_` separators and at most one `.`.
fn parse_number(what: &'static str, text: &str, number: &str) -> Result<f64, UnitError> {
    let digits: String = number.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || digits == "." {
        return Err(invalid(what, text, "it has no number"));
    }
    let value: f64 = digits
        .parse()
        .map_err(|_| invalid(what, text, "the number is malformed"))?;
    if !value.is_finite() {
        return Err(invalid(what, text, "the number is not finite"));
    }
    Ok(value)
}

/// Multiplies `value` by `scale` and checks that the result is a whole number within `u64`.
fn scaled_whole(what: &'static str, text: &str, value: f64, scale: u64) -> Result<u64, UnitError> {
    let product = value * scale as f64;
    // u64::MAX as f64 rounds up to 2^64, so anything at or above it does not fit.
    if product.is_nan() || product >= u64::MAX as f64 {
        return Err(invalid(what, text, "it is too large"));
    }
    let rounded = product.round();
    // Accept products within a relative 1e-9 of a whole number: 1.6 × 1000 is 1600.0000000000002
    // in binary floating point, and `1.6us` should mean 1600 ns.
    if (product - rounded).abs() > 1e-9 * product.max(1.0) {
        return Err(invalid(what, text, "it is not a whole number of units"));
    }
    Ok(rounded as u64)
}

/// Parses a size in bytes.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    const WHAT: &str = "size";
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(invalid(WHAT, text, "it is negative"));
    }
    let (number, unit) = split_number(trimmed);
    let value = parse_number(WHAT, text, number)?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(invalid(
                WHAT,
                text,
                "the unit is not one of B, KiB, MiB, GiB, TiB, kB, MB, GB, TB",
            ));
        }
    };
    scaled_whole(WHAT, text, value, scale)
}

/// Parses a duration; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    const WHAT: &str = "duration";
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(invalid(WHAT, text, "it is negative"));
    }
    let (number, unit) = split_number(trimmed);
    let value = parse_number(WHAT, text, number)?;
    let scale_ns: u64 = match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "" | "s" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => {
            return Err(invalid(
                WHAT,
                text,
                "the unit is not one of ns, us, ms, s, m, h",
            ));
        }
    };
    Ok(Duration::from_nanos(scaled_whole(
        WHAT, text, value, scale_ns,
    )?))
}

/// Parses a count: an integer, optionally with `_` separators, a `k`/`M`/`G` suffix (powers of
/// 1000) or an exponent (`1e6`).
pub fn parse_count(text: &str) -> Result<u64, UnitError> {
    const WHAT: &str = "count";
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(invalid(WHAT, text, "it is negative"));
    }
    if let Some((mantissa, exponent)) = trimmed.split_once(['e', 'E']) {
        let value = parse_number(WHAT, text, mantissa)?;
        let exponent: u32 = exponent
            .parse()
            .map_err(|_| invalid(WHAT, text, "the exponent is malformed"))?;
        let scale = 10u64
            .checked_pow(exponent)
            .ok_or_else(|| invalid(WHAT, text, "it is too large"))?;
        return scaled_whole(WHAT, text, value, scale);
    }
    let (number, unit) = split_number(trimmed);
    let value = parse_number(WHAT, text, number)?;
    let scale: u64 = match unit {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => return Err(invalid(WHAT, text, "the suffix is not one of k, M, G")),
    };
    scaled_whole(WHAT, text, value, scale)
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
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("4096B").unwrap(), 4096);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("64mib").unwrap(), 64 << 20);
        assert_eq!(parse_size("64 MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("2KiB").unwrap(), 2048);
        assert_eq!(parse_size("1TiB").unwrap(), 1 << 40);
        assert_eq!(parse_size("64MB").unwrap(), 64_000_000);
        assert_eq!(parse_size("64kB").unwrap(), 64_000);
        assert_eq!(parse_size("1_000").unwrap(), 1000);
        assert_eq!(parse_size("0").unwrap(), 0);
        for bad in [
            "",
            "MiB",
            "-1",
            "1.5",
            "0.1B",
            "12XB",
            "1e3",
            "1..2",
            "nan",
            "inf",
            "99999999TiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1.6us").unwrap(), Duration::from_nanos(1600));
        assert_eq!(parse_duration("1.6µs").unwrap(), Duration::from_nanos(1600));
        assert_eq!(parse_duration("5us").unwrap(), Duration::from_micros(5));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2.5s").unwrap(), Duration::from_millis(2500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("7ns").unwrap(), Duration::from_nanos(7));
        for bad in ["", "us", "-1s", "1.5ns", "3 parsecs", "1e3s", "nan"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
    }

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
