//! The options of `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ts|KEEPTTL]`.
//!
//! [`SetOptions::parse`] follows Redis 7 step by step, so the same requests fail with the same
//! error: options are matched case-insensitively in one pass that accepts a repeated option (the
//! last expiration value wins) but refuses `NX` with `XX`, two different expirations, and
//! `KEEPTTL` with an expiration, all as `ERR syntax error`; only after that pass is the
//! expiration value read, as an integer (`ERR value is not an integer or out of range`) that is
//! positive and, in seconds, small enough to convert to milliseconds (`ERR invalid expire time
//! in 'set' command`). Adding the current time to a relative expiration can still overflow; that
//! check needs a clock, so it is [`SetExpiry::deadline_unix_ms`], which takes the time as an
//! argument rather than reading one.

use super::commands::{CommandError, parse_i64_arg};
use super::parse::Argv;

/// When `SET` writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SetCondition {
    /// Always (no `NX` or `XX`).
    #[default]
    Always,
    /// `NX`: only if the key does not exist.
    IfAbsent,
    /// `XX`: only if the key exists.
    IfPresent,
}

/// What `SET` does to the key's time to live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SetExpiry {
    /// No expiration option: any time to live the key had is removed.
    #[default]
    Clear,
    /// `KEEPTTL`: the key keeps the time to live it had.
    Keep,
    /// `EX` or `PX`: expires this many milliseconds (always positive) after the write.
    AfterMs(i64),
    /// `EXAT` or `PXAT`: expires at this Unix time in milliseconds (always positive).
    AtUnixMs(i64),
}

impl SetExpiry {
    /// The absolute deadline, in Unix milliseconds, for a write at `now_unix_ms`: `None` for
    /// [`SetExpiry::Clear`] and [`SetExpiry::Keep`]. A relative expiration whose deadline would
    /// overflow is Redis's invalid-expire-time error.
    pub fn deadline_unix_ms(self, now_unix_ms: i64) -> Result<Option<i64>, CommandError> {
        match self {
            Self::Clear | Self::Keep => Ok(None),
            Self::AtUnixMs(deadline) => Ok(Some(deadline)),
            Self::AfterMs(delay) => delay
                .checked_add(now_unix_ms)
                .filter(|deadline| *deadline > 0)
                .map(Some)
                .ok_or(CommandError::InvalidExpireTime("set")),
        }
    }
}

/// The options of one `SET` request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetOptions {
    pub condition: SetCondition,
    /// `GET`: reply with the old value instead of `OK`.
    pub get: bool,
    pub expiry: SetExpiry,
}

/// Which expiration option was given, before its value is read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ExpiryKind {
    Ex,
    Px,
    ExAt,
    PxAt,
}

impl SetOptions {
    /// Parses the options of a whole `SET` request (`argv[0]` is `SET`, `argv[1]` the key,
    /// `argv[2]` the value). Too few arguments is the arity error.
    pub fn parse(argv: &Argv<'_>) -> Result<Self, CommandError> {
        if argv.len() < 3 {
            return Err(CommandError::WrongArity("set"));
        }
        let mut options = Self::default();
        let mut keep_ttl = false;
        let mut expiry: Option<(ExpiryKind, &[u8])> = None;
        let mut index = 3;
        while let Some(option) = argv.get(index) {
            let next = argv.get(index + 1);
            let is = |name: &str| option.eq_ignore_ascii_case(name.as_bytes());
            let other_expiry =
                |kind: ExpiryKind| keep_ttl || expiry.is_some_and(|(given, _)| given != kind);
            let expiry_kind = if is("EX") {
                Some(ExpiryKind::Ex)
            } else if is("PX") {
                Some(ExpiryKind::Px)
            } else if is("EXAT") {
                Some(ExpiryKind::ExAt)
            } else if is("PXAT") {
                Some(ExpiryKind::PxAt)
            } else {
                None
            };
            if is("NX") && options.condition != SetCondition::IfPresent {
                options.condition = SetCondition::IfAbsent;
            } else if is("XX") && options.condition != SetCondition::IfAbsent {
                options.condition = SetCondition::IfPresent;
            } else if is("GET") {
                options.get = true;
            } else if is("KEEPTTL") && expiry.is_none() {
                keep_ttl = true;
            } else if let (Some(kind), Some(value)) = (expiry_kind, next)
                && !other_expiry(kind)
            {
                expiry = Some((kind, value));
                index += 1;
            } else {
                return Err(CommandError::Syntax);
            }
            index += 1;
        }
        options.expiry = match expiry {
            None if keep_ttl => SetExpiry::Keep,
            None => SetExpiry::Clear,
            Some((kind, value)) => {
                let value = parse_i64_arg(value)?;
                let invalid = CommandError::InvalidExpireTime("set");
                if value <= 0 {
                    return Err(invalid);
                }
                match kind {
                    ExpiryKind::Ex => SetExpiry::AfterMs(value.checked_mul(1000).ok_or(invalid)?),
                    ExpiryKind::Px => SetExpiry::AfterMs(value),
                    ExpiryKind::ExAt => {
                        SetExpiry::AtUnixMs(value.checked_mul(1000).ok_or(invalid)?)
                    }
                    ExpiryKind::PxAt => SetExpiry::AtUnixMs(value),
                }
            }
        };
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::parse::Request;
    use super::*;

    fn parse(options: &str) -> Result<SetOptions, String> {
        let mut args = vec!["SET", "key", "value"];
        args.extend(options.split_whitespace());
        let request = Request::from_args(&args);
        SetOptions::parse(&request.argv(&[])).map_err(|error| error.to_string())
    }

    fn options(
        condition: SetCondition,
        get: bool,
        expiry: SetExpiry,
    ) -> Result<SetOptions, String> {
        Ok(SetOptions {
            condition,
            get,
            expiry,
        })
    }

    const SYNTAX: &str = "ERR syntax error";
    const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
    const INVALID_EXPIRE: &str = "ERR invalid expire time in 'set' command";

    #[test]
    fn accepted_options() {
        use SetCondition::*;
        use SetExpiry::*;
        for (text, expected) in [
            ("", options(Always, false, Clear)),
            ("NX", options(IfAbsent, false, Clear)),
            ("xx", options(IfPresent, false, Clear)),
            ("Get", options(Always, true, Clear)),
            ("NX GET", options(IfAbsent, true, Clear)),
            ("EX 10", options(Always, false, AfterMs(10_000))),
            ("px 1500", options(Always, false, AfterMs(1500))),
            (
                "EXAT 1700000000",
                options(Always, false, AtUnixMs(1_700_000_000_000)),
            ),
            (
                "PXAT 1700000000123",
                options(Always, false, AtUnixMs(1_700_000_000_123)),
            ),
            ("KEEPTTL", options(Always, false, Keep)),
            ("keepttl XX get", options(IfPresent, true, Keep)),
            ("GET EX 5 NX", options(IfAbsent, true, AfterMs(5000))),
            // Repeating an option is allowed; the last expiration value wins.
            ("NX NX GET GET", options(IfAbsent, true, Clear)),
            ("EX 1 EX 2", options(Always, false, AfterMs(2000))),
            ("KEEPTTL KEEPTTL", options(Always, false, Keep)),
            (
                "EX 9223372036854775",
                options(Always, false, AfterMs(9_223_372_036_854_775_000)),
            ),
            (
                "PX 9223372036854775807",
                options(Always, false, AfterMs(i64::MAX)),
            ),
        ] {
            assert_eq!(parse(text), expected, "SET key value {text}");
        }
    }

    #[test]
    fn refused_options() {
        for (text, error) in [
            ("NX XX", SYNTAX),
            ("XX NX", SYNTAX),
            ("EX 10 PX 10", SYNTAX),
            ("PX 10 EXAT 10", SYNTAX),
            ("EXAT 10 PXAT 10", SYNTAX),
            ("PXAT 10 EX 10", SYNTAX),
            ("EX 10 KEEPTTL", SYNTAX),
            ("KEEPTTL PX 10", SYNTAX),
            ("EX", SYNTAX),
            ("NX EX", SYNTAX),
            ("FOO", SYNTAX),
            ("NXX", SYNTAX),
            ("EX 10 10", SYNTAX),
            // The syntax pass runs to the end before the value is read.
            ("EX abc NX XX", SYNTAX),
            ("EX abc", NOT_INTEGER),
            ("EX 1.5", NOT_INTEGER),
            ("EX +10", NOT_INTEGER),
            ("EX 010", NOT_INTEGER),
            ("EX 9223372036854775808", NOT_INTEGER),
            ("EX NX", NOT_INTEGER),
            ("EX 0", INVALID_EXPIRE),
            ("PX -1", INVALID_EXPIRE),
            ("EXAT 0", INVALID_EXPIRE),
            ("PXAT -5", INVALID_EXPIRE),
            ("EX 9223372036854776", INVALID_EXPIRE),
            ("EXAT 9223372036854776", INVALID_EXPIRE),
        ] {
            assert_eq!(parse(text), Err(error.to_string()), "SET key value {text}");
        }
        let request = Request::from_args(&["SET", "key"]);
        assert_eq!(
            SetOptions::parse(&request.argv(&[])),
            Err(CommandError::WrongArity("set"))
        );
    }

    #[test]
    fn deadlines() {
        let now = 1_700_000_000_000;
        assert_eq!(SetExpiry::Clear.deadline_unix_ms(now), Ok(None));
        assert_eq!(SetExpiry::Keep.deadline_unix_ms(now), Ok(None));
        assert_eq!(
            SetExpiry::AfterMs(5).deadline_unix_ms(now),
            Ok(Some(now + 5))
        );
        assert_eq!(SetExpiry::AtUnixMs(7).deadline_unix_ms(now), Ok(Some(7)));
        assert_eq!(
            SetExpiry::AfterMs(i64::MAX).deadline_unix_ms(now),
            Err(CommandError::InvalidExpireTime("set"))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_options_never_panic(args in prop::collection::vec(
            prop_oneof![
                Just(b"NX".to_vec()), Just(b"xx".to_vec()), Just(b"GET".to_vec()),
                Just(b"EX".to_vec()), Just(b"px".to_vec()), Just(b"EXAT".to_vec()),
                Just(b"PXAT".to_vec()), Just(b"KEEPTTL".to_vec()), Just(b"10".to_vec()),
                prop::collection::vec(any::<u8>(), 0..6),
            ],
            0..8,
        )) {
            let mut argv: Vec<Vec<u8>> = vec![b"SET".to_vec(), b"k".to_vec(), b"v".to_vec()];
            argv.extend(args);
            let request = Request::from_args(&argv);
            if let Ok(options) = SetOptions::parse(&request.argv(&[])) {
                // An accepted request never combines what Redis refuses.
                let has = |name: &str| argv.iter().skip(3).any(|arg| arg.eq_ignore_ascii_case(name.as_bytes()));
                prop_assert!(!(has("NX") && has("XX")));
                if let SetExpiry::AfterMs(ms) | SetExpiry::AtUnixMs(ms) = options.expiry {
                    prop_assert!(ms > 0);
                }
            }
        }
    }
}
