//! The options of `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
//!
//! Clients send `HELLO 3` to switch a connection to RESP3, often with `AUTH` in the same
//! request. [`HelloOptions::parse`] checks the request the way Redis 7 does, in the same order,
//! so the same mistakes get the same errors: the version first (an integer, else
//! `ERR Protocol version is not an integer or out of range`; 2 or 3, else `NOPROTO`), then the
//! options from left to right (`AUTH` needs two more arguments and `SETNAME` one, else
//! `ERR Syntax error in HELLO option '...'`; a client name must be printable ASCII without
//! spaces). Authenticating and switching the protocol are left to the caller, which owns the
//! connection.
//!
//! Invariant: a parsed client name is at most [`CLIENT_NAME_BYTES_MAX`] bytes, so a connection
//! that stores it stores a bounded amount; a longer name is refused with the invalid-name error
//! (Redis has no such bound).

use super::commands::{CommandError, parse_i64_arg};
use super::constants::{CLIENT_NAME_BYTES_MAX, ERROR_QUOTE_BYTES_MAX};
use super::parse::Argv;
use super::reply::Protocol;

/// The options of one `HELLO` request, borrowing from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HelloOptions<'a> {
    /// The requested protocol; `None` keeps the connection's current one.
    pub protocol: Option<Protocol>,
    /// `AUTH username password`, the last one given.
    pub auth: Option<(&'a [u8], &'a [u8])>,
    /// `SETNAME clientname`, the last one given; empty means "remove the name".
    pub client_name: Option<&'a [u8]>,
}

impl<'a> HelloOptions<'a> {
    /// Parses a whole `HELLO` request (`argv[0]` is `HELLO`).
    pub fn parse(argv: &Argv<'a>) -> Result<Self, CommandError> {
        let mut options = Self::default();
        let Some(version) = argv.get(1) else {
            return Ok(options);
        };
        let version =
            parse_i64_arg(version).map_err(|_| CommandError::ProtocolVersionNotInteger)?;
        options.protocol =
            Some(Protocol::from_version(version).ok_or(CommandError::UnsupportedProtocol)?);
        let mut index = 2;
        while let Some(option) = argv.get(index) {
            let more = argv.len() - index - 1;
            if option.eq_ignore_ascii_case(b"AUTH") && more >= 2 {
                let username = argv.get(index + 1).unwrap_or_default();
                let password = argv.get(index + 2).unwrap_or_default();
                options.auth = Some((username, password));
                index += 3;
            } else if option.eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
                let name = argv.get(index + 1).unwrap_or_default();
                if !is_valid_client_name(name) {
                    return Err(CommandError::InvalidClientName);
                }
                options.client_name = Some(name);
                index += 2;
            } else {
                let shown = option.get(..ERROR_QUOTE_BYTES_MAX).unwrap_or(option);
                let shown = match shown.iter().position(|&byte| byte == 0) {
                    Some(nul) => shown.get(..nul).unwrap_or_default(),
                    None => shown,
                };
                return Err(CommandError::HelloSyntax(
                    String::from_utf8_lossy(shown).into_owned(),
                ));
            }
        }
        Ok(options)
    }
}

/// Whether `name` may be a client name: empty (remove the name), or printable ASCII without
/// spaces (`!` to `~`) and at most [`CLIENT_NAME_BYTES_MAX`] bytes. Redis refuses spaces and
/// control characters so that `CLIENT LIST` output can be split on spaces.
pub fn is_valid_client_name(name: &[u8]) -> bool {
    name.len() <= CLIENT_NAME_BYTES_MAX && name.iter().all(|byte| (b'!'..=b'~').contains(byte))
}

#[cfg(test)]
mod tests {
    use super::super::parse::Request;
    use super::*;

    fn parse_with(args: &[&[u8]], check: impl FnOnce(Result<HelloOptions<'_>, CommandError>)) {
        let request = Request::from_args(args);
        check(HelloOptions::parse(&request.argv(&[])));
    }

    #[test]
    fn accepted_requests() {
        parse_with(&[b"HELLO"], |parsed| {
            assert_eq!(parsed, Ok(HelloOptions::default()));
        });
        parse_with(&[b"hello", b"3"], |parsed| {
            assert_eq!(
                parsed.map(|options| options.protocol),
                Ok(Some(Protocol::Resp3))
            );
        });
        parse_with(
            &[
                b"HELLO", b"2", b"auth", b"u", b"p", b"SetName", b"app-1", b"AUTH", b"v", b"q",
            ],
            |parsed| {
                assert_eq!(
                    parsed,
                    Ok(HelloOptions {
                        protocol: Some(Protocol::Resp2),
                        auth: Some((&b"v"[..], &b"q"[..])),
                        client_name: Some(&b"app-1"[..]),
                    })
                );
            },
        );
        parse_with(&[b"HELLO", b"3", b"SETNAME", b""], |parsed| {
            assert_eq!(
                parsed.map(|options| options.client_name),
                Ok(Some(&b""[..]))
            );
        });
    }

    #[test]
    fn refused_requests() {
        let cases: [(&[&[u8]], &str); 9] = [
            (
                &[b"HELLO", b"x"],
                "ERR Protocol version is not an integer or out of range",
            ),
            (
                &[b"HELLO", b"03"],
                "ERR Protocol version is not an integer or out of range",
            ),
            (&[b"HELLO", b"1"], "NOPROTO unsupported protocol version"),
            (
                &[b"HELLO", b"4", b"junk"],
                "NOPROTO unsupported protocol version",
            ),
            (
                &[b"HELLO", b"3", b"AUTH", b"u"],
                "ERR Syntax error in HELLO option 'AUTH'",
            ),
            (
                &[b"HELLO", b"3", b"SETNAME"],
                "ERR Syntax error in HELLO option 'SETNAME'",
            ),
            (
                &[b"HELLO", b"3", b"foo", b"bar"],
                "ERR Syntax error in HELLO option 'foo'",
            ),
            (
                &[b"HELLO", b"3", b"SETNAME", b"a b", b"foo"],
                "ERR Client names cannot contain spaces, newlines or special characters.",
            ),
            (
                &[b"HELLO", b"3", b"SETNAME", b"a\nb"],
                "ERR Client names cannot contain spaces, newlines or special characters.",
            ),
        ];
        for (args, text) in cases {
            parse_with(args, |parsed| {
                assert_eq!(
                    parsed.map_err(|error| error.to_string()),
                    Err(text.to_string())
                );
            });
        }
        let long_name = vec![b'n'; CLIENT_NAME_BYTES_MAX + 1];
        parse_with(&[b"HELLO", b"3", b"SETNAME", &long_name], |parsed| {
            assert_eq!(parsed, Err(CommandError::InvalidClientName));
        });
        let long_option = vec![b'o'; 300];
        parse_with(&[b"HELLO", b"3", &long_option], |parsed| {
            assert_eq!(
                parsed,
                Err(CommandError::HelloSyntax("o".repeat(ERROR_QUOTE_BYTES_MAX)))
            );
        });
    }
}
