//! The library's named settings ([`Named`]: durability, cache policy) on the command line and in
//! the configuration file, without repeating their values here: clap lists the names and their
//! help from [`Named::ALL`], and both parse through the library's [`parse_name`].

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use dinomo_dataplane::config::{Named, parse_name};
use serde::Deserialize;

/// A clap value parser for `T`: `--help` lists every value with its help, and an unknown value
/// is refused with the list.
pub fn value_parser<T: Named + Send + Sync>() -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(
        T::ALL
            .iter()
            .map(|value| PossibleValue::new(value.name()).help(value.help())),
    )
    .try_map(|text| parse_name::<T>(&text))
}

/// Deserializes an optional `T` from its name (`deserialize_with` of a configuration key).
pub fn deserialize<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Named,
{
    Option::<String>::deserialize(deserializer)?
        .map(|text| parse_name(&text).map_err(serde::de::Error::custom))
        .transpose()
}
