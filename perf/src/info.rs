//! `INFO` replies and dinomo's own counters.
//!
//! [`parse_info`] reads the text of an `INFO` reply: `# Section` headers followed by `field:value`
//! lines, CRLF or LF separated, blank lines ignored. Section names are compared case-insensitively
//! (Redis prints `# Server`, and `INFO server` asks for it in lower case).
//!
//! [`DinomoStats`] is the `dinomo` section, which a dinomo KN reports and Redis does not (Redis
//! answers `INFO dinomo` with an empty text). The section is the contract between the server and
//! this driver; every field is a counter that only grows, since server start:
//!
//! | field | meaning |
//! | --- | --- |
//! | `round_trips` | dependent KN→MN round trips (verbs posted together count once) |
//! | `verbs_<kind>` | verbs posted, `<kind>` one of `read`, `write`, `cas`, `faa`, `rpc` |
//! | `bytes_<kind>` | payload bytes those verbs moved |
//! | `hits_value` | lookups answered from a cached value (0 round trips) |
//! | `hits_shortcut` | lookups answered through a cached shortcut (1 READ) |
//! | `hits_log` | lookups answered from the core's own unmerged log (0 round trips) |
//! | `misses` | lookups that went through the index |
//! | `writes` | writes acknowledged |
//! | `round_trips_<outcome>`, `verbs_<kind>_<outcome>`, `bytes_<kind>_<outcome>` | the same, for the requests of one [`Outcome`]: `value`, `shortcut`, `log`, `miss`, `write` |
//!
//! Other numeric fields are kept as counters too, and other text fields (a cache policy name, say)
//! as labels, so the server can report more without breaking the driver. A field of the table whose
//! value is not an unsigned integer is an error: the driver would otherwise report a wrong figure.

use std::collections::BTreeMap;

use dinomo_dataplane::fabric::VerbKind;

/// Why an `INFO` text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoError {
    #[error("INFO line {line}: {text:?} is not a `field:value` line")]
    Malformed { line: usize, text: String },
    #[error("INFO line {line}: field {field:?} appears twice in section {section:?}")]
    Duplicate {
        line: usize,
        section: String,
        field: String,
    },
    #[error("INFO dinomo field {field:?} has value {value:?}, not an unsigned integer")]
    NotACounter { field: String, value: String },
}

/// The sections of one `INFO` reply: lower-cased section name to its fields, in order of name.
/// Fields before the first header belong to the section named `""`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info {
    pub sections: BTreeMap<String, BTreeMap<String, String>>,
}

impl Info {
    /// The fields of section `name` (any case), if the reply has it.
    pub fn section(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.sections.get(&name.to_ascii_lowercase())
    }

    /// The value of `field` in section `section`.
    pub fn field(&self, section: &str, field: &str) -> Option<&str> {
        self.section(section)?.get(field).map(String::as_str)
    }
}

/// Parses the text of an `INFO` reply.
pub fn parse_info(text: &str) -> Result<Info, InfoError> {
    let mut info = Info::default();
    let mut section = String::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw).trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('#') {
            section = name.trim().to_ascii_lowercase();
            info.sections.entry(section.clone()).or_default();
            continue;
        }
        let malformed = || InfoError::Malformed {
            line: index + 1,
            text: line.to_owned(),
        };
        let (field, value) = line.split_once(':').ok_or_else(malformed)?;
        if field.is_empty() || field.contains(char::is_whitespace) {
            return Err(malformed());
        }
        let fields = info.sections.entry(section.clone()).or_default();
        if fields.insert(field.to_owned(), value.to_owned()).is_some() {
            return Err(InfoError::Duplicate {
                line: index + 1,
                section: section.clone(),
                field: field.to_owned(),
            });
        }
    }
    Ok(info)
}

/// What happened to one request inside a dinomo KN: the outcomes its counters break down by.
pub use dinomo_dataplane::kn::Outcome;

/// The verb kinds the counters break down by, with their field names.
pub fn verb_kinds() -> impl Iterator<Item = &'static str> {
    VerbKind::ALL.into_iter().map(VerbKind::name)
}

/// The counters of the `dinomo` section, or the same counters from an in-process KN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DinomoStats {
    /// Every numeric field.
    pub counters: BTreeMap<String, u64>,
    /// Every other field.
    pub labels: BTreeMap<String, String>,
}

impl DinomoStats {
    /// The `dinomo` section of `info`, or `None` when the reply has no such section (or an empty
    /// one, as Redis gives for a section it does not know).
    pub fn from_info(info: &Info) -> Result<Option<Self>, InfoError> {
        match info.section("dinomo") {
            Some(fields) if !fields.is_empty() => Self::from_fields(fields).map(Some),
            _ => Ok(None),
        }
    }

    /// Sorts `fields` into counters and labels, checking that the fields of the contract are
    /// counters.
    pub fn from_fields<'a, I>(fields: I) -> Result<Self, InfoError>
    where
        I: IntoIterator<Item = (&'a String, &'a String)>,
    {
        let mut stats = DinomoStats::default();
        for (field, value) in fields {
            let value = value.trim();
            match value.parse::<u64>() {
                Ok(count) => {
                    stats.counters.insert(field.clone(), count);
                }
                Err(_) if is_contract_field(field) => {
                    return Err(InfoError::NotACounter {
                        field: field.clone(),
                        value: value.to_owned(),
                    });
                }
                Err(_) => {
                    stats.labels.insert(field.clone(), value.to_owned());
                }
            }
        }
        Ok(stats)
    }

    /// The counter `name`, if reported.
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.counters.get(name).copied()
    }

    /// What the counters grew by since `earlier`. A counter that shrank (the server restarted)
    /// gives 0; a counter missing from `earlier` counts from 0. Labels are taken from `self`.
    pub fn since(&self, earlier: &DinomoStats) -> DinomoStats {
        let counters = self
            .counters
            .iter()
            .map(|(name, &now)| {
                let before = earlier.counter(name).unwrap_or(0);
                (name.clone(), now.saturating_sub(before))
            })
            .collect();
        DinomoStats {
            counters,
            labels: self.labels.clone(),
        }
    }
}

/// Whether `field` is one of the counters of the contract in the module documentation.
fn is_contract_field(field: &str) -> bool {
    if field == "round_trips" || Outcome::ALL.iter().any(|o| o.count_field() == field) {
        return true;
    }
    let strip_outcome = |rest: &str| -> bool {
        rest.is_empty()
            || Outcome::ALL
                .iter()
                .any(|o| rest.strip_prefix('_') == Some(o.name()))
    };
    if let Some(rest) = field.strip_prefix("round_trips") {
        return strip_outcome(rest);
    }
    for prefix in ["verbs_", "bytes_"] {
        if let Some(rest) = field.strip_prefix(prefix) {
            return verb_kinds().any(|kind| rest.strip_prefix(kind).is_some_and(strip_outcome));
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const REDIS_LIKE: &str = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n\r\n# Clients\r\nconnected_clients:1\r\n";

    #[test]
    fn parses_sections_and_fields() {
        let info = parse_info(REDIS_LIKE).unwrap();
        assert_eq!(info.field("server", "redis_version"), Some("7.0.15"));
        assert_eq!(info.field("Server", "redis_mode"), Some("standalone"));
        assert_eq!(info.field("clients", "connected_clients"), Some("1"));
        assert_eq!(info.section("dinomo"), None);
        assert_eq!(DinomoStats::from_info(&info).unwrap(), None);
    }

    #[test]
    fn empty_text_has_no_dinomo_section() {
        let info = parse_info("").unwrap();
        assert!(info.sections.is_empty());
        assert_eq!(DinomoStats::from_info(&info).unwrap(), None);
        // An empty section is what a server that knows the header but has nothing to say sends.
        let info = parse_info("# Dinomo\r\n").unwrap();
        assert_eq!(DinomoStats::from_info(&info).unwrap(), None);
    }

    #[test]
    fn reads_the_dinomo_section() {
        let text = "# Dinomo\nround_trips:456\nverbs_read:123\nbytes_read:9000\nhits_value:10\nhits_shortcut:5\nhits_log:1\nmisses:4\nwrites:7\nround_trips_miss:8\nverbs_read_miss:8\ncache_policy:dac\nused_cache_bytes:1024\n";
        let stats = DinomoStats::from_info(&parse_info(text).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(stats.counter("round_trips"), Some(456));
        assert_eq!(stats.counter("verbs_read"), Some(123));
        assert_eq!(stats.counter("verbs_read_miss"), Some(8));
        assert_eq!(stats.counter("misses"), Some(4));
        assert_eq!(stats.counter("used_cache_bytes"), Some(1024));
        assert_eq!(stats.counter("verbs_cas"), None);
        assert_eq!(
            stats.labels.get("cache_policy").map(String::as_str),
            Some("dac")
        );
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert!(matches!(
            parse_info("# Dinomo\r\nround_trips 5\r\n"),
            Err(InfoError::Malformed { line: 2, .. })
        ));
        assert!(matches!(
            parse_info(":5\r\n"),
            Err(InfoError::Malformed { line: 1, .. })
        ));
        assert!(matches!(
            parse_info("# A\na:1\na:2\n"),
            Err(InfoError::Duplicate { line: 3, .. })
        ));
        // The same field in two sections is fine.
        assert!(parse_info("# A\na:1\n# B\na:2\n").is_ok());
    }

    #[test]
    fn contract_fields_must_be_counters() {
        for field in [
            "round_trips",
            "verbs_read",
            "bytes_faa_miss",
            "hits_log",
            "misses",
            "round_trips_write",
        ] {
            let text = format!("# dinomo\n{field}:many\n");
            assert!(
                matches!(
                    DinomoStats::from_info(&parse_info(&text).unwrap()),
                    Err(InfoError::NotACounter { .. })
                ),
                "{field}"
            );
        }
        let text = "# dinomo\nverbs_read:-1\n";
        assert!(DinomoStats::from_info(&parse_info(text).unwrap()).is_err());
        for field in [
            "round_tripsx",
            "verbs_reads",
            "bytes_read_hit",
            "cache_policy",
        ] {
            assert!(!is_contract_field(field), "{field}");
        }
    }

    #[test]
    fn deltas_since_an_earlier_snapshot() {
        let before =
            DinomoStats::from_info(&parse_info("# dinomo\nround_trips:10\nmisses:3\n").unwrap())
                .unwrap()
                .unwrap();
        let after = DinomoStats::from_info(
            &parse_info("# dinomo\nround_trips:25\nmisses:2\nwrites:4\n").unwrap(),
        )
        .unwrap()
        .unwrap();
        let delta = after.since(&before);
        assert_eq!(delta.counter("round_trips"), Some(15));
        assert_eq!(delta.counter("misses"), Some(0));
        assert_eq!(delta.counter("writes"), Some(4));
    }
}
