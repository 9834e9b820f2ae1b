//! Sizes and durations as people type them on command lines and in configuration files: one
//! parser of each for the `dinomo` binary, its configuration file and `dinomo-bench`.
//!
//! - Sizes ([`parse_size`]): a number of bytes with an optional unit. Memory sizes are binary, so
//!   every unit is a power of 1024 however it is spelled: `8M`, `8MB` and `8MiB` are all
//!   8 × 2^20 bytes. The units are `B`, `K`/`KB`/`KiB`, `M`/`MB`/`MiB`, `G`/`GB`/`GiB` and
//!   `T`/`TB`/`TiB`, in any case (`8mib`); a bare number is bytes. A fraction is taken when it
//!   comes to a whole number of bytes (`1.5GiB`, not `1.5B`).
//! - Durations ([`parse_duration`]): a number with a unit among `ns`, `us` (or `µs`), `ms`, `s`,
//!   `m` (or `min`) and `h`; a bare number is seconds. A fraction is taken when it comes to a
//!   whole number of nanoseconds (`1.6us`, not `1.5ns`).
//!
//! Numbers may have `_` separators (`1_000`) and a space before the unit. Empty, negative,
//! non-finite, overflowing and malformed input is a [`UnitError`] whose message is one sentence;
//! no input panics. [`parse_scaled`] is the shared core, for other kinds of numbers with units (the bench's
//! operation counts).

use std::time::Duration;

/// Why a size or duration (or another number with a unit) could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a {what}: {reason}")]
pub struct UnitError {
    what: &'static str,
    text: String,
    reason: &'static str,
}

impl UnitError {
    /// `text` is not a `what` because of `reason` (a phrase: "it is negative").
    pub fn new(what: &'static str, text: &str, reason: &'static str) -> UnitError {
        UnitError {
            what,
            text: text.to_owned(),
            reason,
        }
    }
}

/// Parses `text` as a non-negative decimal number followed by a unit whose scale `scale_of`
/// gives (or refuses with a reason), and returns the number times the scale when that is a whole
/// number that fits in a `u64`. `what` names the kind of number in errors. The arithmetic is
/// exact: `1.6` times 1000 is 1600, and a number of 20 digits is not rounded.
pub fn parse_scaled(
    what: &'static str,
    text: &str,
    scale_of: impl FnOnce(&str) -> Result<u64, &'static str>,
) -> Result<u64, UnitError> {
    let error = |reason| UnitError::new(what, text, reason);
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(error("it is negative"));
    }
    let end = trimmed
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .map_or(trimmed.len(), |(i, _)| i);
    let (number, unit) = (&trimmed[..end], trimmed[end..].trim());
    let digits: String = number.chars().filter(|&c| c != '_').collect();
    let (whole, fraction) = digits.split_once('.').unwrap_or((&digits, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(error("it has no number"));
    }
    if fraction.contains('.') {
        return Err(error("the number is malformed"));
    }
    let scale = scale_of(unit).map_err(error)?;
    // number × scale = (whole × 10^k + fraction) × scale / 10^k, for the k significant decimals.
    let fraction = fraction.trim_end_matches('0');
    let too_large = || error("it is too large");
    let parse = |part: &str| -> Result<u128, UnitError> {
        if part.is_empty() {
            Ok(0)
        } else {
            part.parse().map_err(|_| too_large())
        }
    };
    let denominator = u32::try_from(fraction.len())
        .ok()
        .and_then(|k| 10u128.checked_pow(k))
        .ok_or_else(too_large)?;
    let product = parse(whole)?
        .checked_mul(denominator)
        .and_then(|n| n.checked_add(parse(fraction).ok()?))
        .and_then(|n| n.checked_mul(u128::from(scale)))
        .ok_or_else(too_large)?;
    if product % denominator != 0 {
        return Err(error("its fraction does not come to a whole number"));
    }
    u64::try_from(product / denominator).map_err(|_| too_large())
}

/// Parses a size in bytes: `4096`, `64KiB`, `8M`, `8MB`, `1.5GiB` (every unit a power of 1024).
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    parse_scaled("size", text, |unit| {
        let shift = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            "t" | "tb" | "tib" => 40,
            _ => {
                return Err(
                    "the unit is not one of B, K, M, G, T (also written KB or KiB: \
                            each a power of 1024)",
                );
            }
        };
        Ok(1u64 << shift)
    })
}

/// Parses a duration: `1.6us`, `200ms`, `30s`, `2m`, `1h`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    parse_scaled("duration", text, |unit| match unit {
        "ns" => Ok(1),
        "us" | "µs" | "μs" => Ok(1_000),
        "ms" => Ok(1_000_000),
        "" | "s" => Ok(1_000_000_000),
        "m" | "min" => Ok(60_000_000_000),
        "h" => Ok(3_600_000_000_000),
        _ => Err("the unit is not one of ns, us, ms, s, m, h"),
    })
    .map(Duration::from_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4096B"), Ok(4096));
        assert_eq!(parse_size("0B"), Ok(0));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64mib"), Ok(64 << 20));
        assert_eq!(parse_size("64 MiB"), Ok(64 << 20));
        assert_eq!(parse_size("16 KiB"), Ok(16 << 10));
        assert_eq!(parse_size("2KiB"), Ok(2048));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("4.5GiB"), Ok(9 << 29));
        assert_eq!(parse_size("1_000"), Ok(1000));
    }

    #[test]
    fn every_spelling_of_a_unit_is_binary() {
        for text in ["8M", "8MiB", "8MB", "8m", "8mb", "8mib", "8 MB"] {
            assert_eq!(parse_size(text), Ok(8 << 20), "{text}");
        }
        for (unit, shift) in [("K", 10), ("G", 30), ("T", 40)] {
            for spelling in [unit.to_owned(), format!("{unit}B"), format!("{unit}iB")] {
                assert_eq!(
                    parse_size(&format!("3{spelling}")),
                    Ok(3 << shift),
                    "{spelling}"
                );
            }
        }
        assert_eq!(parse_size("4GB"), Ok(4 << 30));
        assert_eq!(parse_size("64kB"), Ok(64 << 10));
    }

    #[test]
    fn bad_sizes_are_errors() {
        for bad in [
            "",
            "GiB",
            "MiB",
            "-1",
            "-1GiB",
            "1.5",
            "0.1B",
            "12XB",
            "4 parsecs",
            "1e3",
            "1..2",
            ".",
            "nan",
            "inf",
            "99999999999999999999",
            "99999999TiB",
            "20000000TiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            parse_size("1.5B").unwrap_err().to_string(),
            "\"1.5B\" is not a size: its fraction does not come to a whole number"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1.6us"), Ok(Duration::from_nanos(1600)));
        assert_eq!(parse_duration("1.6µs"), Ok(Duration::from_nanos(1600)));
        assert_eq!(parse_duration("5us"), Ok(Duration::from_micros(5)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        for bad in [
            "",
            "us",
            "fast",
            "-1s",
            "1.5ns",
            "3 parsecs",
            "5 parsecs",
            "1e3s",
            "nan",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
    }
}
