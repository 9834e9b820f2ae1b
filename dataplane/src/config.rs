//! Settings that every layer names the same way: [`Durability`], and the [`Named`] trait that
//! gives a setting's values their names (`flush`, `dac`) for command lines, configuration files,
//! `INFO` and reports.
//!
//! A setting is defined here or beside the code it drives (the cache [`crate::cache::Policy`]),
//! once: the binaries and the bench parse it through [`FromStr`] (or [`parse_name`]) and list its
//! values from [`Named::ALL`]; they never repeat the variants.

/// A setting whose values have names.
pub trait Named: Copy + 'static {
    /// What the setting is called in messages (`durability`, `cache policy`).
    const WHAT: &'static str;
    /// Every value, in the order help lists them.
    const ALL: &'static [Self];

    /// The value's name on command lines, in configuration files, `INFO` and reports.
    fn name(self) -> &'static str;

    /// One phrase on what the value means, for `--help`.
    fn help(self) -> &'static str;

    /// The names of every value, in [`Named::ALL`] order.
    fn names() -> impl Iterator<Item = &'static str> {
        Self::ALL.iter().map(|value| value.name())
    }
}

/// Why a name is not one of a setting's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a {what}: use one of {names}")]
pub struct NameError {
    what: &'static str,
    text: String,
    names: String,
}

/// The value of `T` named `text` (surrounding whitespace and case are ignored).
pub fn parse_name<T: Named>(text: &str) -> Result<T, NameError> {
    let wanted = text.trim();
    T::ALL
        .iter()
        .copied()
        .find(|value| value.name().eq_ignore_ascii_case(wanted))
        .ok_or_else(|| NameError {
            what: T::WHAT,
            text: text.to_owned(),
            names: T::names().collect::<Vec<_>>().join(", "),
        })
}

/// `Display` as the name and `FromStr` through [`parse_name`], for a type that is [`Named`].
macro_rules! display_and_parse_by_name {
    ($type:ty) => {
        impl ::std::fmt::Display for $type {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str($crate::config::Named::name(*self))
            }
        }

        impl ::std::str::FromStr for $type {
            type Err = $crate::config::NameError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                $crate::config::parse_name(text)
            }
        }
    };
}
pub(crate) use display_and_parse_by_name;

/// When a write is acknowledged (DESIGN.md §3), on both sides: a KN acknowledges a write once it
/// is in the pool's memory or once it is flushed to the pool's media, and the memory node
/// flushes what it is asked to only under [`Durability::Flush`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Durability {
    /// In the pool's memory: survives a crash of any process (KN or MN), not a power loss.
    Memory,
    /// Flushed to the pool's media: survives a power loss.
    Flush,
}

impl Named for Durability {
    const WHAT: &'static str = "durability";
    const ALL: &'static [Durability] = &[Durability::Memory, Durability::Flush];

    fn name(self) -> &'static str {
        match self {
            Durability::Memory => "memory",
            Durability::Flush => "flush",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Durability::Memory => {
                "acknowledged once in the pool's memory: survives a crash of any process, not a \
                 power loss"
            }
            Durability::Flush => {
                "acknowledged once flushed to the pool's media: survives a power loss"
            }
        }
    }
}

display_and_parse_by_name!(Durability);

#[cfg(test)]
mod tests {
    use std::fmt;
    use std::str::FromStr;

    use super::*;
    use crate::cache::Policy;

    fn round_trips<T: Named + FromStr<Err = NameError> + fmt::Display + PartialEq + fmt::Debug>() {
        for &value in T::ALL {
            assert_eq!(value.name().parse::<T>(), Ok(value));
            assert_eq!(value.name().to_ascii_uppercase().parse::<T>(), Ok(value));
            assert_eq!(value.to_string(), value.name());
            assert!(!value.help().is_empty());
        }
    }

    #[test]
    fn names_round_trip() {
        round_trips::<Durability>();
        round_trips::<Policy>();
        assert_eq!(
            Policy::names().collect::<Vec<_>>(),
            ["dac", "value", "shortcut", "none"]
        );
        assert_eq!(Durability::names().collect::<Vec<_>>(), ["memory", "flush"]);
        assert_eq!(" flush ".parse::<Durability>(), Ok(Durability::Flush));
    }

    #[test]
    fn unknown_names_are_one_sentence() {
        let e = "disk".parse::<Durability>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"disk\" is not a durability: use one of memory, flush"
        );
        assert!("lru".parse::<Policy>().is_err());
        assert!("".parse::<Policy>().is_err());
    }
}
