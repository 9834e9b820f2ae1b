//! Reply encoding in RESP2 and RESP3, appended to a connection's output buffer.
//!
//! A connection speaks RESP2 until it sends `HELLO 3`. Commands write their replies through a
//! [`ReplyWriter`] without knowing which version is in use: every RESP3 type has the RESP2
//! stand-in Redis uses (a null is `$-1`, a map is a flat array of twice its length, a set an
//! array, a double a bulk string, a boolean the integer 1 or 0, a verbatim string a bulk string).
//!
//! Invariants: the writer only appends, and every call appends exactly one complete RESP value
//! or aggregate header, so a reply is well formed as soon as an aggregate's announced elements
//! have been written. Simple strings and errors cannot carry CR or LF in RESP: the writer
//! replaces them with spaces (and trims them from the ends of an error, as Redis does), so no
//! text a client sent can break the framing of a reply. Numbers are formatted without
//! allocating.

use std::fmt::{self, Write as _};
use std::io::Write as _;

/// The protocol version of a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// RESP2, what every connection starts with.
    #[default]
    Resp2,
    /// RESP3, chosen with `HELLO 3`.
    Resp3,
}

impl Protocol {
    /// The protocol for a `HELLO` version number, if it is one dinomo speaks (2 or 3).
    pub fn from_version(version: i64) -> Option<Self> {
        match version {
            2 => Some(Self::Resp2),
            3 => Some(Self::Resp3),
            _ => None,
        }
    }

    /// The version number `HELLO` reports (`proto`).
    pub fn version(self) -> i64 {
        match self {
            Self::Resp2 => 2,
            Self::Resp3 => 3,
        }
    }
}

/// Appends replies to `out` in one protocol version.
#[derive(Debug)]
pub struct ReplyWriter<'a> {
    out: &'a mut Vec<u8>,
    protocol: Protocol,
}

impl<'a> ReplyWriter<'a> {
    /// A writer appending to `out` in `protocol`.
    pub fn new(out: &'a mut Vec<u8>, protocol: Protocol) -> Self {
        Self { out, protocol }
    }

    /// The protocol this writer encodes.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The bytes written so far (and whatever the buffer held before).
    pub fn as_bytes(&self) -> &[u8] {
        self.out
    }

    /// A simple string: `+text`. CR and LF in `text` become spaces.
    pub fn simple(&mut self, text: &[u8]) {
        self.out.push(b'+');
        let start = self.out.len();
        self.out.extend_from_slice(text);
        blank_line_breaks(self.out.get_mut(start..).unwrap_or_default());
        self.crlf();
    }

    /// The simple string `OK`.
    pub fn ok(&mut self) {
        self.out.extend_from_slice(b"+OK\r\n");
    }

    /// An error: `-message`. The message starts with its code (`ERR syntax error`,
    /// `MOVED 3999 10.0.0.1:6381`). CR and LF are trimmed from its ends and replaced by spaces
    /// inside it, as Redis does, so a client's bytes quoted in an error cannot break framing.
    pub fn error(&mut self, message: &[u8]) {
        self.out.push(b'-');
        let start = self.out.len();
        self.out.extend_from_slice(message);
        self.finish_error(start);
    }

    /// An error whose message is `error`'s `Display` text (for [`super::ProtocolError`],
    /// [`super::CommandError`] and the like), sanitised as [`ReplyWriter::error`] does.
    pub fn error_display(&mut self, error: &impl fmt::Display) {
        self.out.push(b'-');
        let start = self.out.len();
        // Writing into a Vec cannot fail.
        let _ = write!(self.out, "{error}");
        self.finish_error(start);
    }

    /// Sanitises the error message written from `start` on and ends its line.
    fn finish_error(&mut self, start: usize) {
        let message = self.out.get(start..).unwrap_or_default();
        let leading = message
            .iter()
            .take_while(|&&byte| is_line_break(byte))
            .count();
        let trailing = message
            .iter()
            .rev()
            .take_while(|&&byte| is_line_break(byte))
            .count()
            .min(message.len() - leading);
        let end = self.out.len() - trailing;
        self.out.truncate(end);
        self.out.drain(start..start + leading);
        blank_line_breaks(self.out.get_mut(start..).unwrap_or_default());
        self.crlf();
    }

    /// An integer: `:value`.
    pub fn integer(&mut self, value: i64) {
        self.out.push(b':');
        push_i64(self.out, value);
        self.crlf();
    }

    /// A bulk string: `$len` and the bytes, binary safe.
    pub fn bulk(&mut self, bytes: &[u8]) {
        self.length_header(b'$', bytes.len());
        self.out.extend_from_slice(bytes);
        self.crlf();
    }

    /// An integer written as a bulk string, as Redis replies for counters read with `GET`.
    pub fn bulk_i64(&mut self, value: i64) {
        let mut text = StackText::new();
        let _ = write!(text, "{value}");
        self.bulk(text.as_bytes());
    }

    /// A null: RESP2 `$-1` (the null bulk string), RESP3 `_`.
    pub fn null(&mut self) {
        self.out.extend_from_slice(match self.protocol {
            Protocol::Resp2 => b"$-1\r\n".as_slice(),
            Protocol::Resp3 => b"_\r\n",
        });
    }

    /// A null array: RESP2 `*-1`, RESP3 `_` (RESP3 has a single null).
    pub fn null_array(&mut self) {
        self.out.extend_from_slice(match self.protocol {
            Protocol::Resp2 => b"*-1\r\n".as_slice(),
            Protocol::Resp3 => b"_\r\n",
        });
    }

    /// The header of an array of `len` elements: `*len`.
    pub fn array_header(&mut self, len: usize) {
        self.length_header(b'*', len);
    }

    /// The header of a map of `pairs` key-value pairs: RESP3 `%pairs`, RESP2 an array of
    /// `2 × pairs` elements, keys and values alternating.
    pub fn map_header(&mut self, pairs: usize) {
        match self.protocol {
            Protocol::Resp2 => self.length_header(b'*', pairs.saturating_mul(2)),
            Protocol::Resp3 => self.length_header(b'%', pairs),
        }
    }

    /// The header of a set of `len` elements: RESP3 `~len`, RESP2 `*len`.
    pub fn set_header(&mut self, len: usize) {
        match self.protocol {
            Protocol::Resp2 => self.length_header(b'*', len),
            Protocol::Resp3 => self.length_header(b'~', len),
        }
    }

    /// The header of an out-of-band push of `len` elements: RESP3 `>len`; RESP2 has no push
    /// type and Redis sends pushes (pub/sub messages) there as plain arrays.
    pub fn push_header(&mut self, len: usize) {
        match self.protocol {
            Protocol::Resp2 => self.length_header(b'*', len),
            Protocol::Resp3 => self.length_header(b'>', len),
        }
    }

    /// A double: RESP3 `,text`, RESP2 the same text as a bulk string. The text is Redis's:
    /// `nan`, `inf`, `-inf`, `0`, `-0`; an integral value within ±2⁶² as an integer; anything
    /// else as the shortest decimal that reads back to the same double, with an exponent
    /// (`1.5e+20`, `1e-7`) where Redis's formatter uses one.
    pub fn double(&mut self, value: f64) {
        let mut text = StackText::new();
        format_double(value, &mut text);
        match self.protocol {
            Protocol::Resp2 => self.bulk(text.as_bytes()),
            Protocol::Resp3 => {
                self.out.push(b',');
                self.out.extend_from_slice(text.as_bytes());
                self.crlf();
            }
        }
    }

    /// A boolean: RESP3 `#t` / `#f`, RESP2 the integer 1 / 0.
    pub fn boolean(&mut self, value: bool) {
        self.out.extend_from_slice(match (self.protocol, value) {
            (Protocol::Resp2, true) => b":1\r\n".as_slice(),
            (Protocol::Resp2, false) => b":0\r\n",
            (Protocol::Resp3, true) => b"#t\r\n",
            (Protocol::Resp3, false) => b"#f\r\n",
        });
    }

    /// A verbatim plain-text string (what `INFO` answers): RESP3 `=len` with the `txt:` prefix
    /// counted in `len`, RESP2 a bulk string of the text alone.
    pub fn verbatim_text(&mut self, text: &[u8]) {
        self.verbatim(*b"txt", text);
    }

    /// A verbatim string of the three-character `format` (`txt`, `mkd`): RESP3 `=len` and
    /// `format:text`, RESP2 a bulk string of the text alone.
    pub fn verbatim(&mut self, format: [u8; 3], text: &[u8]) {
        match self.protocol {
            Protocol::Resp2 => self.bulk(text),
            Protocol::Resp3 => {
                self.length_header(b'=', text.len().saturating_add(4));
                self.out.extend_from_slice(&format);
                self.out.push(b':');
                self.out.extend_from_slice(text);
                self.crlf();
            }
        }
    }

    fn length_header(&mut self, kind: u8, len: usize) {
        self.out.push(kind);
        push_u64(self.out, u64::try_from(len).unwrap_or(u64::MAX));
        self.crlf();
    }

    fn crlf(&mut self) {
        self.out.extend_from_slice(b"\r\n");
    }
}

/// Replaces CR and LF with spaces, in place.
fn blank_line_breaks(bytes: &mut [u8]) {
    for byte in bytes {
        if is_line_break(*byte) {
            *byte = b' ';
        }
    }
}

fn is_line_break(byte: u8) -> bool {
    matches!(byte, b'\r' | b'\n')
}

/// Appends the decimal digits of `value`.
fn push_u64(out: &mut Vec<u8>, mut value: u64) {
    // u64::MAX has 20 digits.
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        start -= 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

/// Appends `value` in decimal, with a leading `-` when negative.
fn push_i64(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    push_u64(out, value.unsigned_abs());
}

/// A small fixed buffer that numbers are formatted into, so that formatting never allocates.
/// 48 bytes hold any `i64` (20) and any `f64` in exponent form (at most 24, `-2.2250738585072014e-308`).
struct StackText {
    bytes: [u8; 48],
    len: usize,
}

impl StackText {
    fn new() -> Self {
        Self {
            bytes: [0; 48],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    fn extend(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.push(byte);
        }
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let room = self.bytes.len() - self.len;
        if text.len() > room {
            return Err(fmt::Error);
        }
        self.extend(text.as_bytes());
        Ok(())
    }
}

/// Formats `value` the way Redis's `d2string` does (see [`ReplyWriter::double`]).
fn format_double(value: f64, text: &mut StackText) {
    if value.is_nan() {
        text.extend(b"nan");
        return;
    }
    if value.is_infinite() {
        text.extend(if value < 0.0 {
            b"-inf".as_slice()
        } else {
            b"inf"
        });
        return;
    }
    if value == 0.0 {
        text.extend(if value.is_sign_negative() {
            b"-0".as_slice()
        } else {
            b"0"
        });
        return;
    }
    // Redis prints integral values within ±(2⁶³-1)/2 as integers, where the conversion to i64
    // is exact.
    let bound = (i64::MAX / 2) as f64;
    if (-bound..=bound).contains(&value) && value.fract() == 0.0 {
        let _ = write!(text, "{}", value as i64);
        return;
    }
    // The shortest round-trip digits and the decimal exponent, from Rust's exponent form
    // ("1.2345e-7"), then laid out with the rules of Redis's formatter.
    let mut scientific = StackText::new();
    let _ = write!(scientific, "{:e}", value.abs());
    let (mantissa, exponent) = match scientific.as_bytes().iter().position(|&byte| byte == b'e') {
        Some(at) => (
            scientific.as_bytes().get(..at).unwrap_or_default(),
            scientific.as_bytes().get(at + 1..).unwrap_or_default(),
        ),
        None => (scientific.as_bytes(), &b"0"[..]),
    };
    let exponent = std::str::from_utf8(exponent)
        .ok()
        .and_then(|exponent| exponent.parse::<i32>().ok())
        .unwrap_or(0);
    let mut digits = StackText::new();
    for &byte in mantissa {
        if byte.is_ascii_digit() {
            digits.push(byte);
        }
    }
    let digits = digits.as_bytes();
    let digit_count = digits.len() as i32;
    // value = digits × 10^scale
    let scale = exponent - (digit_count - 1);
    let exponent_magnitude = exponent.unsigned_abs() as i32;
    if value < 0.0 {
        text.push(b'-');
    }
    if scale >= 0 && exponent_magnitude < digit_count + 7 {
        text.extend(digits);
        for _ in 0..scale {
            text.push(b'0');
        }
    } else if scale < 0 && (scale > -7 || exponent_magnitude < 4) {
        let integer_digits = digit_count + scale;
        if integer_digits <= 0 {
            text.extend(b"0.");
            for _ in 0..-integer_digits {
                text.push(b'0');
            }
            text.extend(digits);
        } else {
            let split = integer_digits as usize;
            text.extend(digits.get(..split).unwrap_or_default());
            text.push(b'.');
            text.extend(digits.get(split..).unwrap_or_default());
        }
    } else {
        let (first, rest) = digits.split_first().unwrap_or((&b'0', &[]));
        text.push(*first);
        if !rest.is_empty() {
            text.push(b'.');
            text.extend(rest);
        }
        text.push(b'e');
        text.push(if exponent < 0 { b'-' } else { b'+' });
        let _ = write!(text, "{exponent_magnitude}");
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Runs `write` once per protocol and returns what each wrote.
    fn both(write: impl Fn(&mut ReplyWriter<'_>)) -> (Vec<u8>, Vec<u8>) {
        let mut resp2 = Vec::new();
        write(&mut ReplyWriter::new(&mut resp2, Protocol::Resp2));
        let mut resp3 = Vec::new();
        write(&mut ReplyWriter::new(&mut resp3, Protocol::Resp3));
        (resp2, resp3)
    }

    fn check(write: impl Fn(&mut ReplyWriter<'_>), resp2: &[u8], resp3: &[u8]) {
        let (got2, got3) = both(write);
        assert_eq!(
            String::from_utf8_lossy(&got2),
            String::from_utf8_lossy(resp2),
            "RESP2"
        );
        assert_eq!(
            String::from_utf8_lossy(&got3),
            String::from_utf8_lossy(resp3),
            "RESP3"
        );
        assert_eq!(got2, resp2);
        assert_eq!(got3, resp3);
    }

    #[test]
    fn simple_strings_and_errors() {
        check(|w| w.simple(b"PONG"), b"+PONG\r\n", b"+PONG\r\n");
        check(|w| w.ok(), b"+OK\r\n", b"+OK\r\n");
        check(|w| w.simple(b"a\r\nb"), b"+a  b\r\n", b"+a  b\r\n");
        check(
            |w| w.error(b"ERR syntax error"),
            b"-ERR syntax error\r\n",
            b"-ERR syntax error\r\n",
        );
        check(
            |w| w.error(b"\r\nERR bad\rthing\n\r\n"),
            b"-ERR bad thing\r\n",
            b"-ERR bad thing\r\n",
        );
        check(
            |w| w.error_display(&super::super::ProtocolError::ExpectedBulk(b'\r')),
            b"-ERR Protocol error: expected '$', got ' '\r\n",
            b"-ERR Protocol error: expected '$', got ' '\r\n",
        );
        check(
            |w| w.error_display(&"\nERR x\n"),
            b"-ERR x\r\n",
            b"-ERR x\r\n",
        );
        check(|w| w.error(b"\r\n"), b"-\r\n", b"-\r\n");
    }

    #[test]
    fn integers_and_bulk_strings() {
        check(|w| w.integer(0), b":0\r\n", b":0\r\n");
        check(|w| w.integer(-42), b":-42\r\n", b":-42\r\n");
        check(
            |w| w.integer(i64::MIN),
            b":-9223372036854775808\r\n",
            b":-9223372036854775808\r\n",
        );
        check(
            |w| w.integer(i64::MAX),
            b":9223372036854775807\r\n",
            b":9223372036854775807\r\n",
        );
        check(
            |w| w.bulk(b"a\r\nb"),
            b"$4\r\na\r\nb\r\n",
            b"$4\r\na\r\nb\r\n",
        );
        check(|w| w.bulk(b""), b"$0\r\n\r\n", b"$0\r\n\r\n");
        check(|w| w.bulk_i64(-7), b"$2\r\n-7\r\n", b"$2\r\n-7\r\n");
    }

    #[test]
    fn nulls() {
        check(|w| w.null(), b"$-1\r\n", b"_\r\n");
        check(|w| w.null_array(), b"*-1\r\n", b"_\r\n");
    }

    #[test]
    fn aggregate_headers() {
        check(|w| w.array_header(3), b"*3\r\n", b"*3\r\n");
        check(|w| w.array_header(0), b"*0\r\n", b"*0\r\n");
        check(|w| w.map_header(2), b"*4\r\n", b"%2\r\n");
        check(|w| w.map_header(0), b"*0\r\n", b"%0\r\n");
        check(|w| w.set_header(5), b"*5\r\n", b"~5\r\n");
        check(|w| w.push_header(3), b"*3\r\n", b">3\r\n");
        check(
            |w| {
                w.map_header(1);
                w.bulk(b"proto");
                w.integer(3);
            },
            b"*2\r\n$5\r\nproto\r\n:3\r\n",
            b"%1\r\n$5\r\nproto\r\n:3\r\n",
        );
    }

    #[test]
    fn booleans_and_verbatim_strings() {
        check(|w| w.boolean(true), b":1\r\n", b"#t\r\n");
        check(|w| w.boolean(false), b":0\r\n", b"#f\r\n");
        check(
            |w| w.verbatim_text(b"# Server\r\n"),
            b"$10\r\n# Server\r\n\r\n",
            b"=14\r\ntxt:# Server\r\n\r\n",
        );
        check(
            |w| w.verbatim(*b"mkd", b"*x*"),
            b"$3\r\n*x*\r\n",
            b"=7\r\nmkd:*x*\r\n",
        );
    }

    #[test]
    fn doubles_are_formatted_like_redis() {
        check(|w| w.double(1.5), b"$3\r\n1.5\r\n", b",1.5\r\n");
        for (value, text) in [
            (0.0, "0"),
            (-0.0, "-0"),
            (f64::NAN, "nan"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (3.0, "3"),
            (-17.0, "-17"),
            (1e15, "1000000000000000"),
            (4.0e18, "4000000000000000000"),
            (1e19, "1e+19"),
            (1.2345678e20, "1.2345678e+20"),
            (1e300, "1e+300"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (0.001, "0.001"),
            (1.5e-6, "1.5e-6"),
            (1.5e-5, "0.000015"),
            (1e-7, "1e-7"),
            (1.25e-10, "1.25e-10"),
            (123.456, "123.456"),
            (0.1 + 0.2, "0.30000000000000004"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
        ] {
            let mut text_buf = StackText::new();
            format_double(value, &mut text_buf);
            assert_eq!(
                std::str::from_utf8(text_buf.as_bytes()).ok(),
                Some(text),
                "{value:e}"
            );
        }
    }

    proptest! {
        #[test]
        fn doubles_read_back_exactly(value in any::<f64>()) {
            let mut text = StackText::new();
            format_double(value, &mut text);
            let parsed: f64 = std::str::from_utf8(text.as_bytes()).unwrap_or("x").parse().unwrap_or(f64::NAN);
            if value.is_nan() {
                prop_assert!(parsed.is_nan());
            } else {
                prop_assert_eq!(parsed.to_bits(), value.to_bits());
            }
        }

        #[test]
        fn integers_match_std_formatting(value in any::<i64>()) {
            let mut out = Vec::new();
            ReplyWriter::new(&mut out, Protocol::Resp3).integer(value);
            prop_assert_eq!(out, format!(":{value}\r\n").into_bytes());
        }

        #[test]
        fn errors_and_simple_strings_never_break_framing(text in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut out = Vec::new();
            let mut writer = ReplyWriter::new(&mut out, Protocol::Resp2);
            writer.error(&text);
            writer.simple(&text);
            // Exactly two lines, each ending in the only CRLF it holds.
            let breaks = out.iter().filter(|&&byte| byte == b'\r' || byte == b'\n').count();
            prop_assert_eq!(breaks, 4);
            prop_assert!(out.ends_with(b"\r\n"));
        }
    }
}
