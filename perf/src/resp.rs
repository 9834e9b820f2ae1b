//! The RESP side of the bench client: command encoding and an incremental reply parser.
//!
//! [`encode_command`] appends a command as a RESP array of bulk strings, the only request form
//! servers must accept. [`parse_frame`] looks at the bytes received so far and returns either one
//! complete reply and how many bytes it took, or `None` when more bytes are needed; it never
//! consumes a partial reply, so the caller keeps the bytes and calls again after the next read.
//! Every RESP2 and RESP3 reply type is understood: simple strings, errors, integers, bulk strings,
//! arrays, nulls, booleans, doubles, big numbers, bulk errors, verbatim strings, maps, sets, pushes
//! and attributes (which are read and dropped, as they only annotate the reply that follows).
//!
//! Invariants: every length and nesting depth is checked against the limits in
//! [`crate::constants`] before anything is allocated, so a hostile or broken server cannot make the
//! parser allocate more than the bytes it actually sent; malformed input is a [`RespError`], never a
//! panic.

use crate::constants::{
    RESP_AGGREGATE_LEN_MAX, RESP_BULK_BYTES_MAX, RESP_DEPTH_MAX, RESP_LINE_BYTES_MAX,
};

/// Why received bytes are not a valid RESP reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    #[error("malformed RESP reply at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: &'static str },
    #[error("RESP {what} of {len} exceeds the limit of {limit}")]
    TooLarge {
        what: &'static str,
        len: u64,
        limit: u64,
    },
    #[error("RESP aggregates nest deeper than {RESP_DEPTH_MAX}")]
    TooDeep,
}

/// One reply, borrowing its bytes from the receive buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame<'a> {
    /// `+OK`
    Simple(&'a [u8]),
    /// `-ERR ...` and RESP3 bulk errors `!`.
    Error(&'a [u8]),
    /// `:42`
    Integer(i64),
    /// `$5 hello`
    Bulk(&'a [u8]),
    /// RESP3 verbatim string `=`: a three-letter format (`txt`, `mkd`) and the text.
    Verbatim { format: &'a [u8], text: &'a [u8] },
    /// `$-1`, `*-1` and RESP3 `_`.
    Null,
    /// RESP3 `#t` / `#f`.
    Boolean(bool),
    /// RESP3 `,1.5`.
    Double(f64),
    /// RESP3 `(` with its decimal digits.
    BigNumber(&'a [u8]),
    /// `*` arrays and RESP3 `~` sets.
    Array(Vec<Frame<'a>>),
    /// RESP3 `%` maps, as key-value pairs in order.
    Map(Vec<(Frame<'a>, Frame<'a>)>),
    /// RESP3 `>` out-of-band pushes; they answer no request.
    Push(Vec<Frame<'a>>),
}

/// Appends `args` as one RESP command (an array of bulk strings) to `out`.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    push_decimal(out, args.len() as u64);
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        push_decimal(out, arg.len() as u64);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends the decimal digits of `value`.
fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Parses one complete reply at the start of `buf`. Returns the reply and the bytes it spans, or
/// `None` if `buf` holds only part of a reply.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, RespError> {
    let mut cursor = Cursor { buf, pos: 0 };
    match cursor.frame(0)? {
        Some(frame) => Ok(Some((frame, cursor.pos))),
        None => Ok(None),
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn malformed(offset: usize, reason: &'static str) -> RespError {
    RespError::Malformed { offset, reason }
}

impl<'a> Cursor<'a> {
    /// The next line without its CRLF, or `None` if the CRLF has not arrived yet.
    fn line(&mut self) -> Result<Option<&'a [u8]>, RespError> {
        let rest = &self.buf[self.pos..];
        let window = &rest[..rest.len().min(RESP_LINE_BYTES_MAX + 2)];
        match window.iter().position(|&b| b == b'\r') {
            Some(cr) => {
                if cr + 1 >= rest.len() {
                    return Ok(None);
                }
                if rest[cr + 1] != b'\n' {
                    return Err(malformed(self.pos + cr, "CR not followed by LF"));
                }
                let line = &rest[..cr];
                self.pos += cr + 2;
                Ok(Some(line))
            }
            None if window.len() > RESP_LINE_BYTES_MAX => Err(RespError::TooLarge {
                what: "line",
                len: window.len() as u64,
                limit: RESP_LINE_BYTES_MAX as u64,
            }),
            None => Ok(None),
        }
    }

    /// The next `len` bytes followed by CRLF, or `None` if they have not all arrived.
    fn payload(&mut self, len: usize) -> Result<Option<&'a [u8]>, RespError> {
        let rest = &self.buf[self.pos..];
        if rest.len() < len.saturating_add(2) {
            return Ok(None);
        }
        if &rest[len..len + 2] != b"\r\n" {
            return Err(malformed(
                self.pos + len,
                "bulk payload not followed by CRLF",
            ));
        }
        self.pos += len + 2;
        Ok(Some(&rest[..len]))
    }

    /// A length header: `-1` is `None` (a null), anything else must be a count up to `limit`.
    fn length(
        &self,
        line: &[u8],
        what: &'static str,
        limit: usize,
    ) -> Result<Option<usize>, RespError> {
        let offset = self.pos;
        let value = parse_i64(line).ok_or_else(|| malformed(offset, "length is not an integer"))?;
        if value == -1 {
            return Ok(None);
        }
        let len = u64::try_from(value).map_err(|_| malformed(offset, "negative length"))?;
        if len > limit as u64 {
            return Err(RespError::TooLarge {
                what,
                len,
                limit: limit as u64,
            });
        }
        Ok(Some(len as usize))
    }

    fn frame(&mut self, depth: usize) -> Result<Option<Frame<'a>>, RespError> {
        if depth > RESP_DEPTH_MAX {
            return Err(RespError::TooDeep);
        }
        let start = self.pos;
        let Some(line) = self.line()? else {
            return Ok(None);
        };
        let Some((&kind, body)) = line.split_first() else {
            return Err(malformed(
                start,
                "empty line where a reply type was expected",
            ));
        };
        let frame = match kind {
            b'+' => Frame::Simple(body),
            b'-' => Frame::Error(body),
            b':' => Frame::Integer(
                parse_i64(body)
                    .ok_or_else(|| malformed(start, "integer reply is not an integer"))?,
            ),
            b'_' if body.is_empty() => Frame::Null,
            b'_' => return Err(malformed(start, "null reply with a body")),
            b'#' => match body {
                b"t" => Frame::Boolean(true),
                b"f" => Frame::Boolean(false),
                _ => return Err(malformed(start, "boolean reply is not t or f")),
            },
            b',' => Frame::Double(
                parse_double(body)
                    .ok_or_else(|| malformed(start, "double reply is not a number"))?,
            ),
            b'(' => {
                let digits = body
                    .strip_prefix(b"-")
                    .or_else(|| body.strip_prefix(b"+"))
                    .unwrap_or(body);
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return Err(malformed(start, "big number reply is not an integer"));
                }
                Frame::BigNumber(body)
            }
            b'$' | b'!' | b'=' => {
                let Some(len) = self.length(body, "bulk string", RESP_BULK_BYTES_MAX)? else {
                    return if kind == b'$' {
                        Ok(Some(Frame::Null))
                    } else {
                        Err(malformed(start, "only $ bulk strings may be null"))
                    };
                };
                let Some(payload) = self.payload(len)? else {
                    return Ok(None);
                };
                match kind {
                    b'$' => Frame::Bulk(payload),
                    b'!' => Frame::Error(payload),
                    _ => {
                        if payload.len() < 4 || payload[3] != b':' {
                            return Err(malformed(
                                start,
                                "verbatim string without a format prefix",
                            ));
                        }
                        Frame::Verbatim {
                            format: &payload[..3],
                            text: &payload[4..],
                        }
                    }
                }
            }
            b'*' | b'~' | b'>' => {
                let Some(len) = self.length(body, "aggregate", RESP_AGGREGATE_LEN_MAX)? else {
                    return if kind == b'*' {
                        Ok(Some(Frame::Null))
                    } else {
                        Err(malformed(start, "only * arrays may be null"))
                    };
                };
                // Never trust a length for the allocation: grow with what actually arrives.
                let mut items = Vec::with_capacity(len.min(64));
                for _ in 0..len {
                    let Some(item) = self.frame(depth + 1)? else {
                        return Ok(None);
                    };
                    items.push(item);
                }
                if kind == b'>' {
                    Frame::Push(items)
                } else {
                    Frame::Array(items)
                }
            }
            b'%' | b'|' => {
                let Some(len) = self.length(body, "map", RESP_AGGREGATE_LEN_MAX)? else {
                    return Err(malformed(start, "maps may not be null"));
                };
                let mut pairs = Vec::with_capacity(len.min(64));
                for _ in 0..len {
                    let Some(key) = self.frame(depth + 1)? else {
                        return Ok(None);
                    };
                    let Some(value) = self.frame(depth + 1)? else {
                        return Ok(None);
                    };
                    pairs.push((key, value));
                }
                if kind == b'|' {
                    // An attribute annotates the reply that follows it; the bench has no use for
                    // annotations, so it returns that reply alone.
                    return self.frame(depth + 1);
                }
                Frame::Map(pairs)
            }
            _ => return Err(malformed(start, "unknown reply type byte")),
        };
        Ok(Some(frame))
    }
}

/// Parses a strict decimal `i64`: an optional `-`, then digits only.
fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut value: i64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        let d = i64::from(digit - b'0');
        value = if negative {
            value.checked_mul(10)?.checked_sub(d)?
        } else {
            value.checked_mul(10)?.checked_add(d)?
        };
    }
    Some(value)
}

/// Parses a RESP3 double: a decimal or exponent number, `inf`, `-inf` or `nan`.
fn parse_double(text: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(text).ok()?;
    match text {
        "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ if text
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            text.parse().ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn whole(input: &[u8]) -> Frame<'_> {
        let (frame, used) = parse_frame(input).unwrap().expect("complete");
        assert_eq!(
            used,
            input.len(),
            "consumed all of {:?}",
            String::from_utf8_lossy(input)
        );
        frame
    }

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"SET", b"user1", b""]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$5\r\nuser1\r\n$0\r\n\r\n");
        out.clear();
        encode_command(&mut out, &[&[7u8; 10]]);
        assert_eq!(&out[..9], b"*1\r\n$10\r\n");
    }

    #[test]
    fn every_resp2_kind() {
        assert_eq!(whole(b"+OK\r\n"), Frame::Simple(b"OK"));
        assert_eq!(whole(b"-ERR no\r\n"), Frame::Error(b"ERR no"));
        assert_eq!(whole(b":-42\r\n"), Frame::Integer(-42));
        assert_eq!(whole(b":0\r\n"), Frame::Integer(0));
        assert_eq!(whole(b"$5\r\nhe\r\no\r\n"), Frame::Bulk(b"he\r\no"));
        assert_eq!(whole(b"$0\r\n\r\n"), Frame::Bulk(b""));
        assert_eq!(whole(b"$-1\r\n"), Frame::Null);
        assert_eq!(whole(b"*-1\r\n"), Frame::Null);
        assert_eq!(whole(b"*0\r\n"), Frame::Array(vec![]));
        assert_eq!(
            whole(b"*3\r\n:1\r\n*1\r\n+x\r\n$-1\r\n"),
            Frame::Array(vec![
                Frame::Integer(1),
                Frame::Array(vec![Frame::Simple(b"x")]),
                Frame::Null
            ])
        );
    }

    #[test]
    fn every_resp3_kind() {
        assert_eq!(whole(b"_\r\n"), Frame::Null);
        assert_eq!(whole(b"#t\r\n"), Frame::Boolean(true));
        assert_eq!(whole(b"#f\r\n"), Frame::Boolean(false));
        assert_eq!(whole(b",1.5\r\n"), Frame::Double(1.5));
        assert_eq!(whole(b",-inf\r\n"), Frame::Double(f64::NEG_INFINITY));
        assert!(matches!(whole(b",nan\r\n"), Frame::Double(x) if x.is_nan()));
        assert_eq!(
            whole(b"(-12345678901234567890\r\n"),
            Frame::BigNumber(b"-12345678901234567890")
        );
        assert_eq!(whole(b"!3\r\nBAD\r\n"), Frame::Error(b"BAD"));
        assert_eq!(
            whole(b"=8\r\ntxt:a:b1\r\n"),
            Frame::Verbatim {
                format: b"txt",
                text: b"a:b1"
            }
        );
        assert_eq!(
            whole(b"%1\r\n+k\r\n:2\r\n"),
            Frame::Map(vec![(Frame::Simple(b"k"), Frame::Integer(2))])
        );
        assert_eq!(
            whole(b"~1\r\n#t\r\n"),
            Frame::Array(vec![Frame::Boolean(true)])
        );
        assert_eq!(
            whole(b">2\r\n+message\r\n:1\r\n"),
            Frame::Push(vec![Frame::Simple(b"message"), Frame::Integer(1)])
        );
        // An attribute is dropped and the reply after it returned.
        assert_eq!(whole(b"|1\r\n+ttl\r\n:3\r\n:7\r\n"), Frame::Integer(7));
    }

    #[test]
    fn partial_input_needs_more_and_consumes_nothing() {
        let replies: [&[u8]; 6] = [
            b"+OK\r\n",
            b"$5\r\nhello\r\n",
            b"*2\r\n$1\r\na\r\n:9\r\n",
            b"%1\r\n+k\r\n$2\r\nvv\r\n",
            b"=7\r\ntxt:abc\r\n",
            b"|1\r\n+a\r\n+b\r\n:1\r\n",
        ];
        for reply in replies {
            for cut in 0..reply.len() {
                assert_eq!(
                    parse_frame(&reply[..cut]).unwrap(),
                    None,
                    "{:?} cut at {cut}",
                    String::from_utf8_lossy(reply)
                );
            }
            assert!(parse_frame(reply).unwrap().is_some());
        }
    }

    #[test]
    fn pipelined_replies_come_one_at_a_time() {
        let input = b"+OK\r\n$3\r\nabc\r\n$-1\r\n-ERR x\r\n:5\r\n";
        let mut pos = 0;
        let mut seen = Vec::new();
        while let Some((frame, used)) = parse_frame(&input[pos..]).unwrap() {
            seen.push(format!("{frame:?}"));
            pos += used;
        }
        assert_eq!(pos, input.len());
        assert_eq!(seen.len(), 5);
    }

    #[test]
    fn malformed_input_is_an_error() {
        let bad: [&[u8]; 18] = [
            b"?\r\n",
            b"\r\n",
            b"+OK\rX",
            b":12a\r\n",
            b":\r\n",
            b":99999999999999999999\r\n",
            b"$-2\r\n",
            b"$x\r\n",
            b"$3\r\nabcd\r\n",
            b"*-2\r\n",
            b"~-1\r\n",
            b"%-1\r\n",
            b"!-1\r\n",
            b"#x\r\n",
            b",1.2.3x\r\n",
            b"(12a\r\n",
            b"=2\r\nab\r\n",
            b"_x\r\n",
        ];
        for input in bad {
            assert!(
                parse_frame(input).is_err(),
                "{:?} parsed",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn limits_are_enforced() {
        let huge = format!("${}\r\n", RESP_BULK_BYTES_MAX + 1);
        assert!(matches!(
            parse_frame(huge.as_bytes()),
            Err(RespError::TooLarge { .. })
        ));
        let many = format!("*{}\r\n", RESP_AGGREGATE_LEN_MAX + 1);
        assert!(matches!(
            parse_frame(many.as_bytes()),
            Err(RespError::TooLarge { .. })
        ));
        let deep = "*1\r\n".repeat(RESP_DEPTH_MAX + 2);
        assert_eq!(parse_frame(deep.as_bytes()), Err(RespError::TooDeep));
        let long_line = vec![b'+'; RESP_LINE_BYTES_MAX + 10];
        assert!(matches!(
            parse_frame(&long_line),
            Err(RespError::TooLarge { .. })
        ));
        // A line just under the limit without its CRLF yet is still only partial.
        let partial_line = vec![b'+'; RESP_LINE_BYTES_MAX - 1];
        assert_eq!(parse_frame(&partial_line).unwrap(), None);
    }

    proptest! {
        /// No input makes the parser panic, and a complete reply never claims more bytes than given.
        #[test]
        fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(Some((_, used))) = parse_frame(&input) {
                prop_assert!(used <= input.len());
            }
        }

        /// Encoded commands parse back as arrays of the same bulk strings, whatever the cut.
        #[test]
        fn encoded_commands_parse_back(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..5)) {
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let mut out = Vec::new();
            encode_command(&mut out, &refs);
            let (frame, used) = parse_frame(&out).unwrap().unwrap();
            prop_assert_eq!(used, out.len());
            prop_assert_eq!(frame, Frame::Array(refs.iter().map(|a| Frame::Bulk(a)).collect()));
            for cut in 0..out.len() {
                prop_assert_eq!(parse_frame(&out[..cut]).unwrap(), None);
            }
        }
    }
}
