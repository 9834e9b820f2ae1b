//! Byte sizes on the command line: an integer with an optional binary unit (`4GiB`, `512MiB`,
//! `8M`, `65536`). Decimal units (`GB`) are refused rather than guessed, because a pool size must
//! be a multiple of 4 KiB and `4GB` is not.

/// Parses a size such as `4GiB`; the error is one sentence for the command line.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!(
            "'{text}' is not a size: expected a number with an optional unit, like 4GiB"
        ));
    }
    let (number, unit) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is too large"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        _ => {
            return Err(format!(
                "unknown unit '{}' in '{text}': use B, KiB, MiB, GiB or TiB",
                unit.trim()
            ));
        }
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("'{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_with_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("8m"), Ok(8 << 20));
        assert_eq!(parse_size("16 KiB"), Ok(16 << 10));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("0B"), Ok(0));
    }

    #[test]
    fn bad_sizes_are_errors() {
        for bad in [
            "",
            "GiB",
            "4GB",
            "4.5GiB",
            "-1",
            "4 parsecs",
            "99999999999999999999",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_size("20000000TiB").is_err(), "overflow");
    }
}

/// Parses a duration such as `1.6us`, `200ms`, `2s` or `0`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!("'{text}' is not a duration: expected a number with a unit, like 1.6us")
    })?;
    let scale = match unit.trim() {
        "" | "s" => 1e9,
        "ms" => 1e6,
        "us" | "µs" => 1e3,
        "ns" => 1.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}': use ns, us, ms or s"
            ));
        }
    };
    let nanos = value * scale;
    if !nanos.is_finite() || !(0.0..=3.6e12).contains(&nanos) {
        return Err(format!("'{text}' is out of range (0 to 1 hour)"));
    }
    Ok(std::time::Duration::from_nanos(nanos.round() as u64))
}

#[cfg(test)]
mod duration_tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1.6us"), Ok(Duration::from_nanos(1600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("99999s").is_err());
    }
}
