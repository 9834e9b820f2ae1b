//! Incremental, zero-copy parsing of client requests: RESP multibulk and Redis inline commands.
//!
//! A connection appends what it receives to one buffer and calls [`RequestParser::parse`] on the
//! unconsumed part. The answer is one of: a complete [`Request`] and how many bytes it took, an
//! empty request to skip (`*0`, `*-1`, a blank inline line; Redis ignores these too), "incomplete,
//! call again once the buffer holds at least this many bytes", or a [`ProtocolError`], after
//! which the caller sends the error's text as the reply and closes the connection, as Redis does.
//!
//! **Zero copy.** A request does not copy its arguments: it records where each one lies in the
//! buffer, and [`Request::argv`] resolves them against that same buffer. The only exception is an
//! inline argument written with quotes, whose escapes must be decoded; such an argument is
//! decoded into a small scratch vector owned by the request.
//!
//! **Resuming, not rescanning.** The parser keeps a small resume state between calls: the
//! position of the next unread length line, the length of a bulk string whose bytes are still
//! arriving, the positions of the arguments already read, and how far an inline line has been
//! searched for its newline. A call therefore looks only at bytes that were not looked at before,
//! plus at most one partial length line (at most [`INTEGER_CHARS_MAX`] + 3 bytes), and the
//! bytes of a large bulk string are never scanned at all, only counted. Re-parsing from the start
//! on every call would have been simpler, but a request with a million tiny arguments arriving in
//! a thousand pieces would then cost a billion header parses, which any client could provoke.
//! The caller's side of the contract: between a call that answers [`Parsed::Incomplete`] and the
//! next call, the buffer may only grow at its end; after a request or an empty request, the
//! caller drops the consumed bytes (or passes the slice after them) and the next call starts
//! afresh at offset 0. Breaking the contract yields wrong arguments or an error, never a panic.
//!
//! **Strictness.** Lengths are parsed like Redis's `string2ll`: no sign other than a leading
//! `-`, no spaces, no leading zeros, within `i64`. Where Redis skips the two bytes after a length
//! line or after bulk data without looking, dinomo requires them to be `\r\n` and otherwise
//! answers the "invalid multibulk length" or "invalid bulk length" error, so a client that has
//! lost its framing is stopped at once instead of at its next request. A length line is judged
//! as soon as it cannot be valid any more (a character other than a digit or `-`, or more than
//! [`INTEGER_CHARS_MAX`] characters), rather than after 64 KiB as Redis does.
//!
//! **Bounds.** A bulk string longer than [`Limits::bulk_bytes_max`], an array with more than
//! [`Limits::array_element_count_max`] elements, and an inline line longer than
//! [`Limits::inline_bytes_max`] are refused before any of their bytes are waited for. The result
//! of a call never depends on how the bytes were split into pieces: feeding a buffer whole or
//! growing it a byte at a time gives the same requests, the same consumed counts and the same
//! errors.

use std::fmt;

use thiserror::Error;

use super::constants::{
    ARGS_INLINE_COUNT, ARGS_RESERVE_COUNT_MAX, ARRAY_ELEMENT_COUNT_MAX_DEFAULT,
    BULK_BYTES_MAX_DEFAULT, INLINE_BYTES_MAX_DEFAULT, INTEGER_CHARS_MAX,
};

/// How much one request may ask of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string (one argument of a multibulk request), in bytes.
    pub bulk_bytes_max: usize,
    /// Most elements of one multibulk request, and most arguments of one inline line.
    pub array_element_count_max: usize,
    /// Longest inline command line, counting every byte before its `\n` (a `\r` included).
    pub inline_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            bulk_bytes_max: BULK_BYTES_MAX_DEFAULT,
            array_element_count_max: ARRAY_ELEMENT_COUNT_MAX_DEFAULT,
            inline_bytes_max: INLINE_BYTES_MAX_DEFAULT,
        }
    }
}

/// A request the connection cannot be trusted past. `Display` gives the exact text Redis sends
/// as its error reply; the caller sends it and then closes the connection.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// The element count after `*` is not an integer, is not followed by `\r\n`, or exceeds
    /// [`Limits::array_element_count_max`].
    #[error("ERR Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// A bulk length is not an integer, is negative, exceeds [`Limits::bulk_bytes_max`], or the
    /// bulk's bytes are not followed by `\r\n`.
    #[error("ERR Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// An element of a multibulk request does not start with `$`. The byte is shown as a
    /// character (bytes above 127 as the Latin-1 character of the same number); the reply
    /// encoder turns a CR or LF into a space, as Redis does.
    #[error("ERR Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedBulk(u8),
    /// An inline line is longer than [`Limits::inline_bytes_max`] or has more arguments than
    /// [`Limits::array_element_count_max`].
    #[error("ERR Protocol error: too big inline request")]
    InlineTooBig,
    /// An inline line has a quote that is not closed, or a closing quote that is not followed
    /// by a space or the end of the line.
    #[error("ERR Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
}

/// The outcome of one parse call.
#[derive(Clone, Debug, PartialEq, Eq)]
#[expect(
    clippy::large_enum_variant,
    reason = "a request keeps its first arguments inline so that parsing allocates nothing; \
              boxing it would put an allocation back on every request"
)]
pub enum Parsed {
    /// More bytes are needed. The next call can make progress only once the buffer holds at
    /// least `buffer_len_min` bytes, so a caller receiving a large bulk string can reserve that
    /// much and need not call again before it has arrived. The parser bounds each element, not
    /// a whole request: a caller that caps the bytes one connection may buffer (as Redis's
    /// `client-query-buffer-limit` does) compares its cap with `buffer_len_min` and closes the
    /// connection when the request cannot fit.
    Incomplete { buffer_len_min: usize },
    /// `consumed` bytes held a request without arguments (`*0`, `*-1`, or an inline line of
    /// blanks); the caller drops them and carries on, as Redis does.
    Empty { consumed: usize },
    /// A complete request with at least one argument, taken from the first `consumed` bytes.
    Request { request: Request, consumed: usize },
}

/// Parses one request from the start of `buf` without resume state: the same answer as a fresh
/// [`RequestParser`] gives. Convenient when the whole buffer is at hand; a connection that
/// receives bytes piecemeal should keep a [`RequestParser`] so that no byte is scanned twice.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Parsed, ProtocolError> {
    RequestParser::new(*limits).parse(buf)
}

/// Parses a decimal `i64` the way Redis's `string2ll` does: an optional leading `-`, then
/// either `0` alone or a non-zero digit followed by digits, fitting in `i64`, with nothing else
/// (no `+`, no spaces, no leading zeros, no `-0`).
pub fn parse_i64(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > INTEGER_CHARS_MAX {
        return None;
    }
    if bytes == b"0" {
        return Some(0);
    }
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    let (&first, rest) = digits.split_first()?;
    if !(b'1'..=b'9').contains(&first) {
        return None;
    }
    let mut magnitude = u64::from(first - b'0');
    for &byte in rest {
        if !byte.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(byte - b'0'))?;
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Where one argument lies: a byte range of the caller's buffer, or of the request's own scratch
/// vector for a decoded (quoted) inline argument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ArgSpan {
    start: usize,
    end: usize,
    in_scratch: bool,
}

/// The argument positions of a request: up to [`ARGS_INLINE_COUNT`] without allocating, more
/// on the heap. Never longer than [`Limits::array_element_count_max`], because the parser checks
/// a count before it pushes.
#[derive(Clone, Debug)]
enum ArgSpans {
    Inline {
        len: usize,
        spans: [ArgSpan; ARGS_INLINE_COUNT],
    },
    Heap(Vec<ArgSpan>),
}

impl Default for ArgSpans {
    fn default() -> Self {
        Self::Inline {
            len: 0,
            spans: [ArgSpan::default(); ARGS_INLINE_COUNT],
        }
    }
}

impl PartialEq for ArgSpans {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for ArgSpans {}

impl ArgSpans {
    fn as_slice(&self) -> &[ArgSpan] {
        match self {
            Self::Inline { len, spans } => spans.get(..*len).unwrap_or(&[]),
            Self::Heap(spans) => spans,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Prepares for a request announced to have `count` elements: reserves heap room when they
    /// will not fit inline, but never more than [`ARGS_RESERVE_COUNT_MAX`] ahead of their
    /// arrival.
    fn reserve_for(&mut self, count: usize) {
        if count > ARGS_INLINE_COUNT {
            let mut heap = Vec::with_capacity(count.min(ARGS_RESERVE_COUNT_MAX));
            heap.extend_from_slice(self.as_slice());
            *self = Self::Heap(heap);
        }
    }

    fn push(&mut self, span: ArgSpan) {
        match self {
            Self::Inline { len, spans } => {
                if let Some(slot) = spans.get_mut(*len) {
                    *slot = span;
                    *len += 1;
                } else {
                    let mut heap = Vec::with_capacity(ARGS_INLINE_COUNT * 2);
                    heap.extend_from_slice(spans);
                    heap.push(span);
                    *self = Self::Heap(heap);
                }
            }
            Self::Heap(spans) => spans.push(span),
        }
    }
}

/// A complete request: the positions of its arguments in the buffer it was parsed from, plus
/// the decoded bytes of any quoted inline argument. It holds no borrow, so the caller may keep
/// it while it keeps the buffer's bytes in place; [`Request::argv`] reads the arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    spans: ArgSpans,
    scratch: Vec<u8>,
}

impl Request {
    /// Builds a request that owns copies of `args`, for callers (and tests) that have arguments
    /// in hand rather than in a receive buffer. Its [`Request::argv`] ignores the buffer.
    pub fn from_args<A: AsRef<[u8]>>(args: &[A]) -> Self {
        let mut request = Self::default();
        for arg in args {
            let start = request.scratch.len();
            request.scratch.extend_from_slice(arg.as_ref());
            request.spans.push(ArgSpan {
                start,
                end: request.scratch.len(),
                in_scratch: true,
            });
        }
        request
    }

    /// Number of arguments, the command name included.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the request has no arguments (never true of one the parser returns).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The arguments, resolved against `buf`, the buffer (or the slice of it) this request was
    /// parsed from.
    pub fn argv<'a>(&'a self, buf: &'a [u8]) -> Argv<'a> {
        Argv {
            buf,
            scratch: &self.scratch,
            spans: self.spans.as_slice(),
        }
    }
}

/// The arguments of a request, borrowed: `argv[0]` is the command name.
#[derive(Clone, Copy)]
pub struct Argv<'a> {
    buf: &'a [u8],
    scratch: &'a [u8],
    spans: &'a [ArgSpan],
}

impl<'a> Argv<'a> {
    /// Number of arguments, the command name included.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are no arguments at all.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Argument `index`, or `None` past the end. An argument whose position lies outside the
    /// buffer (the request was resolved against the wrong buffer) reads as empty.
    pub fn get(&self, index: usize) -> Option<&'a [u8]> {
        self.spans.get(index).map(|span| self.resolve(*span))
    }

    /// The command name (`argv[0]`), empty if there is none.
    pub fn command_name(&self) -> &'a [u8] {
        self.get(0).unwrap_or_default()
    }

    /// All arguments in order.
    pub fn iter(&self) -> ArgvIter<'a> {
        ArgvIter {
            argv: *self,
            index: 0,
        }
    }

    fn resolve(&self, span: ArgSpan) -> &'a [u8] {
        let source = if span.in_scratch {
            self.scratch
        } else {
            self.buf
        };
        source.get(span.start..span.end).unwrap_or_default()
    }
}

impl fmt::Debug for Argv<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|arg| String::from_utf8_lossy(arg)))
            .finish()
    }
}

impl<'a> IntoIterator for Argv<'a> {
    type Item = &'a [u8];
    type IntoIter = ArgvIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over the arguments of an [`Argv`].
#[derive(Clone, Debug)]
pub struct ArgvIter<'a> {
    argv: Argv<'a>,
    index: usize,
}

impl<'a> Iterator for ArgvIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<Self::Item> {
        let arg = self.argv.get(self.index)?;
        self.index += 1;
        Some(arg)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = self.argv.len().saturating_sub(self.index);
        (remaining, Some(remaining))
    }
}

impl ExactSizeIterator for ArgvIter<'_> {}

/// What the parser remembers of a request that has not fully arrived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Progress {
    /// Nothing read yet: the next byte decides between multibulk and inline.
    #[default]
    Idle,
    /// Inside a multibulk request whose element count has been read.
    Multibulk {
        /// Elements still to read.
        remaining: usize,
        /// Offset of the next unread byte: a `$` length line, or bulk data if `bulk_len` is set.
        position: usize,
        /// Length of the bulk whose data starts at `position`, once its length line is read.
        bulk_len: Option<usize>,
    },
    /// Inside an inline line; bytes before `scanned` hold no `\n`.
    Inline { scanned: usize },
}

/// Per-connection request parser: the limits it enforces and the resume state of the request
/// that is still arriving. See the module documentation for the buffer contract.
#[derive(Clone, Debug, Default)]
pub struct RequestParser {
    limits: Limits,
    progress: Progress,
    /// Arguments of the multibulk request in progress; moved into the [`Request`] when it
    /// completes.
    spans: ArgSpans,
}

/// What a length line (`*N\r\n` or `$N\r\n`) turned out to be.
enum LengthLine {
    /// The line has not fully arrived and may still be valid.
    Incomplete,
    /// The line can never be a valid length.
    Invalid,
    /// The value, and the offset just past the line's `\r\n`.
    Value { value: i64, next: usize },
}

impl RequestParser {
    /// A parser that enforces `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            progress: Progress::Idle,
            spans: ArgSpans::default(),
        }
    }

    /// The limits this parser enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Forgets any partly read request, for a connection that discards its buffer.
    pub fn reset(&mut self) {
        self.progress = Progress::Idle;
        self.spans = ArgSpans::default();
    }

    /// Parses the next request from the start of `buf`. See [`Parsed`] for the outcomes; after
    /// an error the parser is reset, but the connection should be closed anyway.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Parsed, ProtocolError> {
        let outcome = self.parse_inner(buf);
        if !matches!(outcome, Ok(Parsed::Incomplete { .. })) {
            self.reset();
        }
        outcome
    }

    fn parse_inner(&mut self, buf: &[u8]) -> Result<Parsed, ProtocolError> {
        if self.progress == Progress::Idle {
            match buf.first() {
                None => return Ok(Parsed::Incomplete { buffer_len_min: 1 }),
                Some(b'*') => {
                    // The element count line is short, so re-reading a partial one costs at
                    // most a few bytes and needs no state of its own.
                    let (count, next) = match length_line(buf, 0) {
                        LengthLine::Incomplete => return Ok(incomplete_line(buf)),
                        LengthLine::Invalid => return Err(ProtocolError::InvalidMultibulkLength),
                        LengthLine::Value { value, next } => (value, next),
                    };
                    let Ok(count) = usize::try_from(count) else {
                        // Redis treats a count of zero or less as a request to skip.
                        return Ok(Parsed::Empty { consumed: next });
                    };
                    if count == 0 {
                        return Ok(Parsed::Empty { consumed: next });
                    }
                    if count > self.limits.array_element_count_max {
                        return Err(ProtocolError::InvalidMultibulkLength);
                    }
                    self.spans = ArgSpans::default();
                    self.spans.reserve_for(count);
                    self.progress = Progress::Multibulk {
                        remaining: count,
                        position: next,
                        bulk_len: None,
                    };
                }
                Some(_) => self.progress = Progress::Inline { scanned: 0 },
            }
        }
        match self.progress {
            Progress::Idle => Ok(Parsed::Incomplete { buffer_len_min: 1 }),
            Progress::Multibulk { .. } => self.parse_multibulk(buf),
            Progress::Inline { scanned } => self.parse_inline(buf, scanned),
        }
    }

    fn parse_multibulk(&mut self, buf: &[u8]) -> Result<Parsed, ProtocolError> {
        let Progress::Multibulk {
            mut remaining,
            mut position,
            mut bulk_len,
        } = self.progress
        else {
            return Ok(Parsed::Incomplete { buffer_len_min: 1 });
        };
        let outcome = loop {
            let len = match bulk_len {
                Some(len) => len,
                None => {
                    match buf.get(position) {
                        None => {
                            break Parsed::Incomplete {
                                buffer_len_min: position.saturating_add(1),
                            };
                        }
                        Some(b'$') => {}
                        Some(&other) => return Err(ProtocolError::ExpectedBulk(other)),
                    }
                    let (value, next) = match length_line(buf, position) {
                        LengthLine::Incomplete => break incomplete_line(buf),
                        LengthLine::Invalid => return Err(ProtocolError::InvalidBulkLength),
                        LengthLine::Value { value, next } => (value, next),
                    };
                    let len = usize::try_from(value)
                        .ok()
                        .filter(|len| *len <= self.limits.bulk_bytes_max)
                        .ok_or(ProtocolError::InvalidBulkLength)?;
                    position = next;
                    bulk_len = Some(len);
                    len
                }
            };
            // Only the length of a bulk is looked at until all of it is here: its bytes are
            // never scanned, however many calls it takes them to arrive.
            let end = position
                .checked_add(len)
                .ok_or(ProtocolError::InvalidBulkLength)?;
            let after = end.checked_add(2).ok_or(ProtocolError::InvalidBulkLength)?;
            let Some(terminator) = buf.get(end..after) else {
                break Parsed::Incomplete {
                    buffer_len_min: after,
                };
            };
            if terminator != b"\r\n" {
                return Err(ProtocolError::InvalidBulkLength);
            }
            self.spans.push(ArgSpan {
                start: position,
                end,
                in_scratch: false,
            });
            position = after;
            bulk_len = None;
            remaining -= 1;
            if remaining == 0 {
                break Parsed::Request {
                    request: Request {
                        spans: std::mem::take(&mut self.spans),
                        scratch: Vec::new(),
                    },
                    consumed: position,
                };
            }
        };
        self.progress = Progress::Multibulk {
            remaining,
            position,
            bulk_len,
        };
        Ok(outcome)
    }

    fn parse_inline(&mut self, buf: &[u8], scanned: usize) -> Result<Parsed, ProtocolError> {
        // The line may hold at most `inline_bytes_max` bytes before its '\n', so the newline,
        // if the line is acceptable, lies within the first `inline_bytes_max + 1` bytes.
        let window_end = buf
            .len()
            .min(self.limits.inline_bytes_max.saturating_add(1));
        let window = buf.get(scanned..window_end).unwrap_or_default();
        let Some(offset) = window.iter().position(|&byte| byte == b'\n') else {
            if buf.len() > self.limits.inline_bytes_max {
                return Err(ProtocolError::InlineTooBig);
            }
            self.progress = Progress::Inline {
                scanned: window_end,
            };
            return Ok(incomplete_line(buf));
        };
        let newline = scanned + offset;
        let mut line = buf.get(..newline).unwrap_or_default();
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        let mut request = Request::default();
        split_inline(line, &mut request, self.limits.array_element_count_max)?;
        let consumed = newline + 1;
        if request.is_empty() {
            Ok(Parsed::Empty { consumed })
        } else {
            Ok(Parsed::Request { request, consumed })
        }
    }
}

/// "Call again with one more byte": the answer while a line is still arriving.
fn incomplete_line(buf: &[u8]) -> Parsed {
    Parsed::Incomplete {
        buffer_len_min: buf.len().saturating_add(1),
    }
}

/// Reads the length line whose type byte (`*` or `$`) is at `at`.
fn length_line(buf: &[u8], at: usize) -> LengthLine {
    let digits_start = at.saturating_add(1);
    let rest = buf.get(digits_start..).unwrap_or_default();
    // One byte more than the longest valid number, to see the '\r' that must end it.
    let window = rest.get(..INTEGER_CHARS_MAX + 1).unwrap_or(rest);
    let Some(end) = window
        .iter()
        .position(|&byte| !(byte.is_ascii_digit() || byte == b'-'))
    else {
        return if window.len() > INTEGER_CHARS_MAX {
            LengthLine::Invalid
        } else {
            LengthLine::Incomplete
        };
    };
    if window.get(end) != Some(&b'\r') {
        return LengthLine::Invalid;
    }
    let Some(value) = window.get(..end).and_then(parse_i64) else {
        return LengthLine::Invalid;
    };
    match rest.get(end + 1) {
        None => LengthLine::Incomplete,
        Some(b'\n') => LengthLine::Value {
            value,
            next: digits_start + end + 2,
        },
        Some(_) => LengthLine::Invalid,
    }
}

/// Whether `byte` is white space to C's `isspace` in the C locale, which is what separates
/// inline arguments and what must follow a closing quote.
fn is_c_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Whether `byte` ends an unquoted inline argument. This is narrower than [`is_c_space`]:
/// vertical tab and form feed are skipped between arguments but kept inside one, as Redis does.
fn ends_bare_argument(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// Splits an inline line (without its line ending) into arguments with Redis's quoting rules.
///
/// Bare arguments are recorded as positions in the line (which starts at offset 0 of the
/// caller's buffer). An argument that opens a quote, at its start or in its middle (`ab"c d"`
/// is `abc d`), is decoded into `request.scratch`; it ends at the closing quote, which must be
/// followed by white space or the end of the line. A NUL byte ends the line, as it ends the C
/// string Redis splits.
fn split_inline(
    line: &[u8],
    request: &mut Request,
    argument_count_max: usize,
) -> Result<(), ProtocolError> {
    let line = match line.iter().position(|&byte| byte == 0) {
        Some(nul) => line.get(..nul).unwrap_or_default(),
        None => line,
    };
    let mut index = 0;
    loop {
        while line.get(index).is_some_and(|&byte| is_c_space(byte)) {
            index += 1;
        }
        if index >= line.len() {
            return Ok(());
        }
        let start = index;
        while line
            .get(index)
            .is_some_and(|&byte| !ends_bare_argument(byte) && byte != b'"' && byte != b'\'')
        {
            index += 1;
        }
        let span = match line.get(index) {
            Some(&quote @ (b'"' | b'\'')) => {
                let scratch_start = request.scratch.len();
                request
                    .scratch
                    .extend_from_slice(line.get(start..index).unwrap_or_default());
                index = if quote == b'"' {
                    read_double_quoted(line, index + 1, &mut request.scratch)?
                } else {
                    read_single_quoted(line, index + 1, &mut request.scratch)?
                };
                if line.get(index).is_some_and(|&byte| !is_c_space(byte)) {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                ArgSpan {
                    start: scratch_start,
                    end: request.scratch.len(),
                    in_scratch: true,
                }
            }
            _ => ArgSpan {
                start,
                end: index,
                in_scratch: false,
            },
        };
        if request.len() >= argument_count_max {
            return Err(ProtocolError::InlineTooBig);
        }
        request.spans.push(span);
    }
}

/// Decodes a double-quoted argument whose content starts at `index`, appending to `out`;
/// returns the offset just past the closing quote. Escapes: `\n \r \t \b \a`, `\xHH` with two
/// hex digits, and a backslash before any other byte stands for that byte (`\"`, `\\`).
fn read_double_quoted(
    line: &[u8],
    mut index: usize,
    out: &mut Vec<u8>,
) -> Result<usize, ProtocolError> {
    loop {
        match line.get(index) {
            None => return Err(ProtocolError::UnbalancedQuotes),
            Some(b'"') => return Ok(index + 1),
            Some(b'\\') => {
                let hex = (
                    line.get(index + 1),
                    line.get(index + 2).and_then(|&b| hex_value(b)),
                    line.get(index + 3).and_then(|&b| hex_value(b)),
                );
                if let (Some(b'x'), Some(high), Some(low)) = hex {
                    out.push(high * 16 + low);
                    index += 4;
                } else if let Some(&escaped) = line.get(index + 1) {
                    out.push(match escaped {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                    index += 2;
                } else {
                    // A backslash ending the line leaves the quote open.
                    return Err(ProtocolError::UnbalancedQuotes);
                }
            }
            Some(&byte) => {
                out.push(byte);
                index += 1;
            }
        }
    }
}

/// Decodes a single-quoted argument whose content starts at `index`, appending to `out`;
/// returns the offset just past the closing quote. The only escape is `\'`.
fn read_single_quoted(
    line: &[u8],
    mut index: usize,
    out: &mut Vec<u8>,
) -> Result<usize, ProtocolError> {
    loop {
        match line.get(index) {
            None => return Err(ProtocolError::UnbalancedQuotes),
            Some(b'\'') => return Ok(index + 1),
            Some(b'\\') if line.get(index + 1) == Some(&b'\'') => {
                out.push(b'\'');
                index += 2;
            }
            Some(&byte) => {
                out.push(byte);
                index += 1;
            }
        }
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Encodes `args` as a RESP multibulk request, the way every client does.
    fn encode(args: &[Vec<u8>]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// Quotes `arg` for an inline line so that it always decodes back to itself: every byte
    /// as `\xHH`, which also exercises the hex escape on all 256 values.
    fn quote_hex(arg: &[u8]) -> Vec<u8> {
        let mut out = b"\"".to_vec();
        for byte in arg {
            out.extend_from_slice(format!("\\x{byte:02x}").as_bytes());
        }
        out.push(b'"');
        out
    }

    fn parse_whole(buf: &[u8]) -> Result<Parsed, ProtocolError> {
        parse_request(buf, &Limits::default())
    }

    /// The arguments of a request parsed from `buf`, or the non-request outcome.
    fn args_of(buf: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        match parse_whole(buf) {
            Ok(Parsed::Request { request, .. }) => {
                Ok(request.argv(buf).iter().map(<[u8]>::to_vec).collect())
            }
            other => Err(format!("{other:?}")),
        }
    }

    fn strings(args: &[&str]) -> Vec<Vec<u8>> {
        args.iter().map(|arg| arg.as_bytes().to_vec()).collect()
    }

    /// Feeds `buf` to one parser as a sequence of growing prefixes ending at each of `cuts` and
    /// then at its full length; returns the first outcome that is not `Incomplete` (or the last
    /// `Incomplete`), checking that no earlier call claimed more than the prefix it saw.
    fn parse_in_pieces(
        buf: &[u8],
        cuts: &[usize],
        limits: Limits,
    ) -> Result<Parsed, ProtocolError> {
        let mut parser = RequestParser::new(limits);
        let mut ends: Vec<usize> = cuts.iter().map(|cut| cut % (buf.len() + 1)).collect();
        ends.sort_unstable();
        ends.push(buf.len());
        let mut last = Ok(Parsed::Incomplete { buffer_len_min: 1 });
        for end in ends {
            last = parser.parse(&buf[..end]);
            match &last {
                Ok(Parsed::Incomplete { buffer_len_min }) => assert!(*buffer_len_min > end),
                _ => return last,
            }
        }
        last
    }

    #[test]
    fn multibulk_request_parses_into_its_arguments() {
        let buf = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nv\r\nal\r\n";
        let Ok(Parsed::Request { request, consumed }) = parse_whole(buf) else {
            panic!("expected a request");
        };
        assert_eq!(consumed, buf.len());
        let argv = request.argv(buf);
        assert_eq!(argv.len(), 3);
        assert_eq!(argv.command_name(), b"SET");
        assert_eq!(argv.get(1), Some(&b"k"[..]));
        assert_eq!(argv.get(2), Some(&b"v\r\nal"[..]));
        assert_eq!(argv.get(3), None);
    }

    #[test]
    fn pipelined_requests_are_returned_one_at_a_time() {
        let mut buf = encode(&strings(&["PING"]));
        buf.extend_from_slice(b"ECHO hi\r\n");
        buf.extend_from_slice(&encode(&strings(&["GET", "k"])));
        let mut parser = RequestParser::default();
        let mut offset = 0;
        let mut seen = Vec::new();
        while let Ok(Parsed::Request { request, consumed }) = parser.parse(&buf[offset..]) {
            seen.push(
                request
                    .argv(&buf[offset..])
                    .iter()
                    .map(<[u8]>::to_vec)
                    .collect::<Vec<_>>(),
            );
            offset += consumed;
        }
        assert_eq!(offset, buf.len());
        assert_eq!(
            seen,
            vec![
                strings(&["PING"]),
                strings(&["ECHO", "hi"]),
                strings(&["GET", "k"])
            ]
        );
    }

    #[test]
    fn empty_multibulk_and_blank_inline_lines_are_skipped() {
        for (buf, consumed) in [
            (&b"*0\r\n"[..], 4),
            (b"*-1\r\n", 5),
            (b"*-7\r\nGET", 5),
            (b"\r\n", 2),
            (b"\n", 1),
            (b"  \t \r\n", 6),
            (b"\x0b\x0c\n", 3),
        ] {
            assert_eq!(parse_whole(buf), Ok(Parsed::Empty { consumed }), "{buf:?}");
        }
    }

    #[test]
    fn incomplete_input_reports_the_length_it_needs() {
        assert_eq!(
            parse_whole(b""),
            Ok(Parsed::Incomplete { buffer_len_min: 1 })
        );
        assert_eq!(
            parse_whole(b"*1"),
            Ok(Parsed::Incomplete { buffer_len_min: 3 })
        );
        assert_eq!(
            parse_whole(b"*1\r"),
            Ok(Parsed::Incomplete { buffer_len_min: 4 })
        );
        assert_eq!(
            parse_whole(b"*1\r\n"),
            Ok(Parsed::Incomplete { buffer_len_min: 5 })
        );
        // Once a bulk length is known the parser asks for the whole bulk and its CRLF.
        assert_eq!(
            parse_whole(b"*1\r\n$1000\r\nab"),
            Ok(Parsed::Incomplete {
                buffer_len_min: 11 + 1000 + 2
            })
        );
        assert_eq!(
            parse_whole(b"GET k"),
            Ok(Parsed::Incomplete { buffer_len_min: 6 })
        );
    }

    #[test]
    fn a_large_bulk_is_counted_not_rescanned() {
        // The resume state keeps the bulk's length: later calls jump straight to its end, so
        // bytes that would be a protocol error if they were parsed as headers are never parsed.
        let mut buf = b"*2\r\n$3\r\nSET\r\n$20\r\n".to_vec();
        let mut parser = RequestParser::default();
        assert!(matches!(
            parser.parse(&buf),
            Ok(Parsed::Incomplete { buffer_len_min: 40 })
        ));
        buf.extend_from_slice(b"*$*$*$*$*$");
        assert!(matches!(
            parser.parse(&buf),
            Ok(Parsed::Incomplete { buffer_len_min: 40 })
        ));
        buf.extend_from_slice(b"*$*$*$*$*$\r\n");
        let Ok(Parsed::Request { request, consumed }) = parser.parse(&buf) else {
            panic!("expected a request");
        };
        assert_eq!(consumed, 40);
        assert_eq!(
            request.argv(&buf).get(1),
            Some(&b"*$*$*$*$*$*$*$*$*$*$"[..])
        );
    }

    #[test]
    fn many_small_requests_do_not_allocate_argument_storage() {
        let buf = encode(&strings(&["SET", "key", "value", "EX", "10", "NX", "GET"]));
        let Ok(Parsed::Request { request, .. }) = parse_whole(&buf) else {
            panic!("expected a request");
        };
        assert!(matches!(request.spans, ArgSpans::Inline { len: 7, .. }));
    }

    #[test]
    fn protocol_errors_use_redis_texts() {
        let cases: [(&[u8], &str); 16] = [
            (b"*x\r\n", "ERR Protocol error: invalid multibulk length"),
            (b"*1x", "ERR Protocol error: invalid multibulk length"),
            (b"*01\r\n", "ERR Protocol error: invalid multibulk length"),
            (b"*+1\r\n", "ERR Protocol error: invalid multibulk length"),
            (b"*\r\n", "ERR Protocol error: invalid multibulk length"),
            (b"*1\rx", "ERR Protocol error: invalid multibulk length"),
            (
                b"*99999999999999999999\r\n",
                "ERR Protocol error: invalid multibulk length",
            ),
            (
                b"*123456789012345678901",
                "ERR Protocol error: invalid multibulk length",
            ),
            (b"*1\r\n$-1\r\n", "ERR Protocol error: invalid bulk length"),
            (b"*1\r\n$a\r\n", "ERR Protocol error: invalid bulk length"),
            (
                b"*1\r\n$3\r\nabcd\r\n",
                "ERR Protocol error: invalid bulk length",
            ),
            (
                b"*1\r\n$600000000\r\n",
                "ERR Protocol error: invalid bulk length",
            ),
            (b"*1\r\nx", "ERR Protocol error: expected '$', got 'x'"),
            (
                b"*2\r\n$1\r\na\r\n:1\r\n",
                "ERR Protocol error: expected '$', got ':'",
            ),
            (
                b"SET \"a b\"c\r\n",
                "ERR Protocol error: unbalanced quotes in request",
            ),
            (
                b"SET 'a\r\n",
                "ERR Protocol error: unbalanced quotes in request",
            ),
        ];
        for (buf, text) in cases {
            match parse_whole(buf) {
                Err(error) => assert_eq!(error.to_string(), text, "{buf:?}"),
                other => panic!("{buf:?} gave {other:?}"),
            }
        }
        let long_line = vec![b'a'; INLINE_BYTES_MAX_DEFAULT + 1];
        assert_eq!(
            parse_whole(&long_line).map_err(|error| error.to_string()),
            Err("ERR Protocol error: too big inline request".to_string())
        );
    }

    #[test]
    fn inline_arguments_follow_redis_quoting() {
        let cases: [(&[u8], &[&[u8]]); 16] = [
            (b"GET k\r\n", &[b"GET", b"k"]),
            (b"GET k\n", &[b"GET", b"k"]),
            (b"  SET   a\tb  \r\n", &[b"SET", b"a", b"b"]),
            (b"a\rb\n", &[b"a", b"b"]),
            (b"a\x0bb\n", &[b"a\x0bb"]),
            (b"SET \"hello world\" x\n", &[b"SET", b"hello world", b"x"]),
            (b"\"\\n\\r\\t\\b\\a\\\\\\\"\"\n", &[b"\n\r\t\x08\x07\\\""]),
            (b"\"\\x41\\xfF\\x00\"\n", &[b"A\xff\x00"]),
            (b"\"\\x4\" \"\\xg0\"\n", &[b"x4", b"xg0"]),
            (b"\"\\q\"\n", &[b"q"]),
            (b"'it\\'s' 'a\\nb' '\"'\n", &[b"it's", b"a\\nb", b"\""]),
            (b"ab\"c d\"\n", &[b"abc d"]),
            (b"\"\" ''\n", &[b"", b""]),
            (b"a\"x\"\tb\n", &[b"ax", b"b"]),
            (b"GET a\x00b c\n", &[b"GET", b"a"]),
            (b"caf\xc3\xa9 \xff\n", &[b"caf\xc3\xa9", b"\xff"]),
        ];
        for (line, expected) in cases {
            let expected: Vec<Vec<u8>> = expected.iter().map(|arg| arg.to_vec()).collect();
            assert_eq!(args_of(line), Ok(expected), "{line:?}");
        }
    }

    #[test]
    fn inline_quote_errors() {
        for line in [
            &b"\"abc\n"[..],
            b"'abc\n",
            b"\"abc\"def\n",
            b"'abc'def\n",
            b"\"abc\\\n",
            b"\"abc\\\"\n",
            b"'abc\\'\n",
            b"\"a\x00\"\n",
        ] {
            assert_eq!(
                parse_whole(line),
                Err(ProtocolError::UnbalancedQuotes),
                "{line:?}"
            );
        }
        // A closing quote followed by a vertical tab is fine: that is C white space.
        assert_eq!(args_of(b"\"a\"\x0bb\n"), Ok(strings(&["a", "b"])));
    }

    #[test]
    fn unquoted_inline_arguments_are_not_copied() {
        let buf = b"SET k \"v\"\r\n";
        let Ok(Parsed::Request { request, .. }) = parse_whole(buf) else {
            panic!("expected a request");
        };
        let spans = request.spans.as_slice();
        assert!(!spans[0].in_scratch && !spans[1].in_scratch && spans[2].in_scratch);
        assert_eq!(request.scratch, b"v");
    }

    #[test]
    fn inline_line_limit_counts_bytes_before_the_newline() {
        let limits = Limits {
            inline_bytes_max: 8,
            ..Limits::default()
        };
        let ok = parse_request(b"GET abcd\n", &limits);
        assert!(matches!(ok, Ok(Parsed::Request { consumed: 9, .. })));
        // The '\r' counts too: "GET abcd\r" is nine bytes before the newline.
        assert_eq!(
            parse_request(b"GET abcd\r\n", &limits),
            Err(ProtocolError::InlineTooBig)
        );
        assert_eq!(
            parse_request(b"GET abcd", &limits),
            Ok(Parsed::Incomplete { buffer_len_min: 9 })
        );
        assert_eq!(
            parse_request(b"GET abcde", &limits),
            Err(ProtocolError::InlineTooBig)
        );
        let few_args = Limits {
            array_element_count_max: 2,
            ..Limits::default()
        };
        assert!(matches!(
            parse_request(b"GET k\n", &few_args),
            Ok(Parsed::Request { .. })
        ));
        assert_eq!(
            parse_request(b"MGET a b\n", &few_args),
            Err(ProtocolError::InlineTooBig)
        );
    }

    #[test]
    fn multibulk_limits_are_enforced_at_the_header() {
        let limits = Limits {
            bulk_bytes_max: 4,
            array_element_count_max: 3,
            inline_bytes_max: 16,
        };
        assert!(matches!(
            parse_request(&encode(&strings(&["a", "b", "cdef"])), &limits),
            Ok(Parsed::Request { .. })
        ));
        // Refused as soon as the header is read, without waiting for the elements.
        assert_eq!(
            parse_request(b"*4\r\n", &limits),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            parse_request(b"*1\r\n$5\r\n", &limits),
            Err(ProtocolError::InvalidBulkLength)
        );
    }

    #[test]
    fn extreme_limits_do_not_overflow() {
        let limits = Limits {
            bulk_bytes_max: usize::MAX,
            array_element_count_max: usize::MAX,
            inline_bytes_max: usize::MAX,
        };
        let huge = b"*9223372036854775807\r\n$9223372036854775807\r\n";
        let outcome = parse_request(huge, &limits);
        assert!(matches!(outcome, Ok(Parsed::Incomplete { .. }) | Err(_)));
        assert_eq!(
            parse_request(b"GET k", &limits),
            Ok(Parsed::Incomplete { buffer_len_min: 6 })
        );
        let zero = Limits {
            bulk_bytes_max: 0,
            array_element_count_max: 0,
            inline_bytes_max: 0,
        };
        assert_eq!(
            parse_request(b"*1\r\n", &zero),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            parse_request(b"\n", &zero),
            Ok(Parsed::Empty { consumed: 1 })
        );
        assert_eq!(parse_request(b"a", &zero), Err(ProtocolError::InlineTooBig));
    }

    #[test]
    fn parse_i64_matches_string2ll() {
        for (text, value) in [
            ("0", Some(0)),
            ("1", Some(1)),
            ("-1", Some(-1)),
            ("10", Some(10)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("-9223372036854775809", None),
            ("18446744073709551616", None),
            ("99999999999999999999", None),
            ("123456789012345678901", None),
            ("", None),
            ("-", None),
            ("-0", None),
            ("00", None),
            ("01", None),
            ("+1", None),
            (" 1", None),
            ("1 ", None),
            ("1.0", None),
            ("1e3", None),
            ("--1", None),
            ("0x10", None),
        ] {
            assert_eq!(parse_i64(text.as_bytes()), value, "{text:?}");
        }
    }

    #[test]
    fn request_from_args_owns_its_arguments() {
        let request = Request::from_args(&["SET", "k", "v"]);
        let argv = request.argv(&[]);
        assert_eq!(argv.iter().collect::<Vec<_>>(), [&b"SET"[..], b"k", b"v"]);
        assert_eq!(argv.iter().len(), 3);
    }

    fn arg_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..40)
    }

    fn argv_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(arg_strategy(), 1..20)
    }

    proptest! {
        #[test]
        fn encoded_argv_parses_back(args in argv_strategy(), tail in prop::collection::vec(any::<u8>(), 0..8)) {
            let mut buf = encode(&args);
            let len = buf.len();
            buf.extend_from_slice(&tail);
            let Ok(Parsed::Request { request, consumed }) = parse_whole(&buf) else {
                panic!("expected a request");
            };
            prop_assert_eq!(consumed, len);
            let parsed: Vec<Vec<u8>> = request.argv(&buf).iter().map(<[u8]>::to_vec).collect();
            prop_assert_eq!(parsed, args);
        }

        #[test]
        fn pieces_parse_like_the_whole(args in argv_strategy(), cuts in prop::collection::vec(any::<usize>(), 0..12)) {
            let buf = encode(&args);
            prop_assert_eq!(parse_in_pieces(&buf, &cuts, Limits::default()), parse_whole(&buf));
        }

        #[test]
        fn quoted_inline_argv_parses_back(args in argv_strategy()) {
            let mut line = Vec::new();
            for arg in &args {
                line.extend_from_slice(&quote_hex(arg));
                line.push(b' ');
            }
            line.extend_from_slice(b"\r\n");
            prop_assert_eq!(args_of(&line), Ok(args));
        }

        #[test]
        fn inline_pieces_parse_like_the_whole(
            args in argv_strategy(),
            cuts in prop::collection::vec(any::<usize>(), 0..12),
        ) {
            let mut line = Vec::new();
            for arg in &args {
                line.extend_from_slice(&quote_hex(arg));
                line.push(b' ');
            }
            line.extend_from_slice(b"\r\n");
            let whole = parse_whole(&line);
            let whole_is_request = matches!(whole, Ok(Parsed::Request { .. }));
            prop_assert!(whole_is_request);
            prop_assert_eq!(parse_in_pieces(&line, &cuts, Limits::default()), whole);
        }

        #[test]
        fn bare_inline_argv_parses_back(args in prop::collection::vec("[a-zA-Z0-9_:{}.-]{1,12}", 1..12), separator in "[ \t]{1,3}") {
            let line = format!("{}\r\n", args.join(&separator));
            let expected: Vec<Vec<u8>> = args.iter().map(|arg| arg.as_bytes().to_vec()).collect();
            prop_assert_eq!(args_of(line.as_bytes()), Ok(expected));
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_split_like_the_whole(
            buf in prop::collection::vec(any::<u8>(), 0..200),
            cuts in prop::collection::vec(any::<usize>(), 0..8),
        ) {
            let whole = parse_whole(&buf);
            match &whole {
                Ok(Parsed::Incomplete { buffer_len_min }) => prop_assert!(*buffer_len_min > buf.len()),
                Ok(Parsed::Empty { consumed }) => prop_assert!(*consumed <= buf.len()),
                Ok(Parsed::Request { request, consumed }) => {
                    prop_assert!(*consumed <= buf.len());
                    prop_assert!(!request.is_empty());
                }
                Err(_) => {}
            }
            prop_assert_eq!(parse_in_pieces(&buf, &cuts, Limits::default()), whole);
        }

        #[test]
        fn mutated_requests_never_panic_and_split_like_the_whole(
            args in argv_strategy(),
            flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
            cuts in prop::collection::vec(any::<usize>(), 0..8),
        ) {
            // Random bytes rarely look like RESP; corrupting a valid request reaches the deeper
            // states of the parser.
            let mut buf = encode(&args);
            for (at, byte) in flips {
                let at = at % buf.len();
                buf[at] = byte;
            }
            let limits = Limits { bulk_bytes_max: 64, array_element_count_max: 32, inline_bytes_max: 64 };
            let whole = parse_request(&buf, &limits);
            prop_assert_eq!(parse_in_pieces(&buf, &cuts, limits), whole);
        }

        #[test]
        fn limits_are_enforced(
            args in argv_strategy(),
            bulk_bytes_max in 0usize..48,
            array_element_count_max in 0usize..24,
            inline_bytes_max in 0usize..64,
        ) {
            let limits = Limits { bulk_bytes_max, array_element_count_max, inline_bytes_max };
            let buf = encode(&args);
            let expected = if args.len() > array_element_count_max {
                Err(ProtocolError::InvalidMultibulkLength)
            } else if args.iter().any(|arg| arg.len() > bulk_bytes_max) {
                Err(ProtocolError::InvalidBulkLength)
            } else {
                Ok(args.clone())
            };
            let outcome = match parse_request(&buf, &limits) {
                Ok(Parsed::Request { request, .. }) => Ok(request.argv(&buf).iter().map(<[u8]>::to_vec).collect()),
                Err(error) => Err(error),
                other => panic!("unexpected {other:?}"),
            };
            prop_assert_eq!(outcome, expected);

            let line: Vec<u8> = args.iter().flat_map(|arg| quote_hex(arg).into_iter().chain([b' '])).chain(*b"\n").collect();
            let outcome = parse_request(&line, &limits);
            if line.len() - 1 > inline_bytes_max || args.len() > array_element_count_max {
                prop_assert_eq!(outcome, Err(ProtocolError::InlineTooBig));
            } else {
                let parsed_ok = matches!(outcome, Ok(Parsed::Request { .. }));
                prop_assert!(parsed_ok);
            }
        }
    }
}
