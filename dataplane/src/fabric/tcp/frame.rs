//! The tcp fabric's wire format (specified in `fabric/FRAMES.md`): length-prefixed,
//! little-endian binary frames, with pure encoders and decoders shared by the client and the
//! server.
//!
//! Every frame is a `u32` length (the bytes after it) and a body that starts with a kind byte.
//! Decoders borrow from the input, check every length exactly and never panic: whatever a peer
//! sends becomes a [`Request`], a [`Response`] or a [`FrameError`]. Size limits of verbs
//! ([`VERB_BYTES_MAX`], [`RPC_BYTES_MAX`]) are not frame errors: a decoded verb that exceeds
//! them gets an error completion from the serving side; only [`FRAME_BODY_BYTES_MAX`] bounds a
//! frame.

use crate::fabric::{RPC_BYTES_MAX, VERB_BYTES_MAX, Verb, VerbError, VerbKind, WrId};

/// The protocol version this build speaks; a handshake with another version is refused.
pub const PROTOCOL_VERSION: u16 = 1;
/// The first bytes of a HELLO body after its kind.
pub const MAGIC: [u8; 4] = *b"DNMO";
/// Bytes of the length prefix.
pub const LEN_BYTES: usize = 4;
/// Longest cluster token.
pub const TOKEN_BYTES_MAX: usize = 256;
/// Longest HELLO body: kind, magic, version, token length, token.
pub const HELLO_BODY_BYTES_MAX: usize = 1 + 4 + 2 + 2 + TOKEN_BYTES_MAX;
/// Bytes before a verb's payload in the largest request header (WRITE: kind, wr, remote, flags)
/// and response header (kind, wr, verb, status).
pub const VERB_HEADER_BYTES_MAX: usize = 1 + 8 + 8 + 1;
/// Longest frame body either side accepts: the largest WRITE or READ reply.
pub const FRAME_BODY_BYTES_MAX: usize = VERB_BYTES_MAX as usize + VERB_HEADER_BYTES_MAX;
/// Longest text in a CLOSE frame or a refusal.
pub const MESSAGE_BYTES_MAX: usize = 512;

const _: () = assert!(HELLO_BODY_BYTES_MAX < FRAME_BODY_BYTES_MAX);
/// Bytes of a COMPLETION frame before its payload: kind, wr, verb, status.
pub const COMPLETION_HEADER_BYTES: usize = 1 + 8 + 1 + 1;

const _: () = assert!(COMPLETION_HEADER_BYTES <= VERB_HEADER_BYTES_MAX);
const _: () = assert!(RPC_BYTES_MAX as usize + VERB_HEADER_BYTES_MAX <= FRAME_BODY_BYTES_MAX);
const _: () = assert!(FRAME_BODY_BYTES_MAX <= u32::MAX as usize);

/// Frame kinds (the first body byte).
pub mod kind {
    /// Client: protocol version and cluster token; must be the first frame.
    pub const HELLO: u8 = 0x01;
    pub const READ: u8 = 0x10;
    pub const WRITE: u8 = 0x11;
    pub const CAS: u8 = 0x12;
    pub const FAA: u8 = 0x13;
    pub const RPC: u8 = 0x14;
    /// Server: the handshake succeeded.
    pub const WELCOME: u8 = 0x81;
    /// Server: the connection is refused or dropped, with a code and a reason; it closes next.
    pub const CLOSE: u8 = 0x82;
    /// Server: one work request's completion.
    pub const COMPLETION: u8 = 0x90;
}

/// Status byte of a COMPLETION frame.
pub mod status {
    pub const OK: u8 = 0;
    pub const OUT_OF_BOUNDS: u8 = 1;
    pub const MISALIGNED: u8 = 2;
    pub const TOO_LARGE: u8 = 3;
    pub const REFUSED: u8 = 4;
    pub const DISCONNECTED: u8 = 5;
}

/// Why the server closes a connection (the code of a CLOSE frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseCode {
    /// The first frame was not a well-formed HELLO.
    BadHello = 1,
    /// The client speaks another protocol version.
    Version = 2,
    /// The cluster token does not match.
    Token = 3,
    /// The server is at its connection limit.
    TooManyConnections = 4,
    /// A verb arrived before the handshake.
    Unauthenticated = 5,
    /// A frame could not be decoded.
    Protocol = 6,
    /// A frame is longer than the limit.
    FrameTooLarge = 7,
    /// The peer stalled mid-frame, in the handshake, or stopped reading.
    Timeout = 8,
    /// The server is shutting down.
    ShuttingDown = 9,
}

impl CloseCode {
    pub fn from_u8(code: u8) -> Option<CloseCode> {
        Some(match code {
            1 => CloseCode::BadHello,
            2 => CloseCode::Version,
            3 => CloseCode::Token,
            4 => CloseCode::TooManyConnections,
            5 => CloseCode::Unauthenticated,
            6 => CloseCode::Protocol,
            7 => CloseCode::FrameTooLarge,
            8 => CloseCode::Timeout,
            9 => CloseCode::ShuttingDown,
            _ => return None,
        })
    }
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("empty frame")]
    Empty,
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    #[error("frame of kind {kind:#04x} has a body of {len} bytes, which is not a valid length")]
    BadLength { kind: u8, len: usize },
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(u64),
    #[error("HELLO without the protocol's magic bytes")]
    BadMagic,
    #[error("unknown flags {0:#04x}")]
    BadFlags(u8),
    #[error("unknown verb {0}")]
    BadVerb(u8),
    #[error("unknown status {0}")]
    BadStatus(u8),
}

/// A decoded client frame, borrowing its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    Hello {
        version: u16,
        token: &'a [u8],
    },
    Read {
        wr: u64,
        remote: u64,
        len: u32,
    },
    Write {
        wr: u64,
        remote: u64,
        persist: bool,
        data: &'a [u8],
    },
    Cas {
        wr: u64,
        remote: u64,
        expected: u64,
        new: u64,
    },
    Faa {
        wr: u64,
        remote: u64,
        add: u64,
    },
    Rpc {
        wr: u64,
        request: &'a [u8],
    },
}

/// A decoded server frame, borrowing its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response<'a> {
    Welcome {
        version: u16,
        region_len: u64,
    },
    Close {
        code: u8,
        message: String,
    },
    Completion {
        wr: u64,
        kind: VerbKind,
        result: Result<Payload<'a>, VerbError>,
    },
}

/// The payload of a successful completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload<'a> {
    None,
    Bytes(&'a [u8]),
    Word(u64),
}

/// The body length announced by the frame at the start of `buf`, if its prefix has arrived.
pub fn body_len(buf: &[u8]) -> Option<usize> {
    let prefix: [u8; LEN_BYTES] = buf.get(..LEN_BYTES)?.try_into().ok()?;
    Some(u32::from_le_bytes(prefix) as usize)
}

/// A little-endian reader over a body that has been length-checked.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = tail;
        head
    }
    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(pad::<2>(self.take(2)))
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(pad::<4>(self.take(4)))
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(pad::<8>(self.take(8)))
    }
    fn rest(&mut self) -> &'a [u8] {
        self.take(self.rest.len())
    }
}

/// Copies up to `N` bytes into an array; the decoders check lengths before reading, so the
/// padding is never used, but it keeps the reader total.
fn pad<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out[..bytes.len().min(N)].copy_from_slice(&bytes[..bytes.len().min(N)]);
    out
}

fn exact(kind: u8, body: &[u8], len: usize) -> Result<(), FrameError> {
    if body.len() == len {
        Ok(())
    } else {
        Err(FrameError::BadLength {
            kind,
            len: body.len(),
        })
    }
}

fn at_least(kind: u8, body: &[u8], len: usize) -> Result<(), FrameError> {
    if body.len() >= len {
        Ok(())
    } else {
        Err(FrameError::BadLength {
            kind,
            len: body.len(),
        })
    }
}

/// Decodes a client frame body (without its length prefix).
pub fn decode_request(body: &[u8]) -> Result<Request<'_>, FrameError> {
    if body.len() > FRAME_BODY_BYTES_MAX {
        return Err(FrameError::TooLarge(body.len() as u64));
    }
    let Some(&k) = body.first() else {
        return Err(FrameError::Empty);
    };
    let mut r = Reader { rest: &body[1..] };
    match k {
        kind::HELLO => {
            at_least(k, body, 1 + 4 + 2 + 2)?;
            if r.take(4) != MAGIC {
                return Err(FrameError::BadMagic);
            }
            let version = r.u16();
            let token_len = usize::from(r.u16());
            if token_len > TOKEN_BYTES_MAX {
                return Err(FrameError::BadLength {
                    kind: k,
                    len: body.len(),
                });
            }
            exact(k, body, 1 + 4 + 2 + 2 + token_len)?;
            Ok(Request::Hello {
                version,
                token: r.rest(),
            })
        }
        kind::READ => {
            exact(k, body, 1 + 8 + 8 + 4)?;
            Ok(Request::Read {
                wr: r.u64(),
                remote: r.u64(),
                len: r.u32(),
            })
        }
        kind::WRITE => {
            at_least(k, body, 1 + 8 + 8 + 1)?;
            let wr = r.u64();
            let remote = r.u64();
            let flags = r.u8();
            if flags & !1 != 0 {
                return Err(FrameError::BadFlags(flags));
            }
            Ok(Request::Write {
                wr,
                remote,
                persist: flags & 1 != 0,
                data: r.rest(),
            })
        }
        kind::CAS => {
            exact(k, body, 1 + 8 * 4)?;
            Ok(Request::Cas {
                wr: r.u64(),
                remote: r.u64(),
                expected: r.u64(),
                new: r.u64(),
            })
        }
        kind::FAA => {
            exact(k, body, 1 + 8 * 3)?;
            Ok(Request::Faa {
                wr: r.u64(),
                remote: r.u64(),
                add: r.u64(),
            })
        }
        kind::RPC => {
            at_least(k, body, 1 + 8)?;
            Ok(Request::Rpc {
                wr: r.u64(),
                request: r.rest(),
            })
        }
        other => Err(FrameError::UnknownKind(other)),
    }
}

fn verb_of(code: u8) -> Result<VerbKind, FrameError> {
    VerbKind::ALL
        .get(usize::from(code))
        .copied()
        .ok_or(FrameError::BadVerb(code))
}

/// Decodes a server frame body (without its length prefix).
pub fn decode_response(body: &[u8]) -> Result<Response<'_>, FrameError> {
    if body.len() > FRAME_BODY_BYTES_MAX {
        return Err(FrameError::TooLarge(body.len() as u64));
    }
    let Some(&k) = body.first() else {
        return Err(FrameError::Empty);
    };
    let mut r = Reader { rest: &body[1..] };
    match k {
        kind::WELCOME => {
            exact(k, body, 1 + 2 + 8)?;
            Ok(Response::Welcome {
                version: r.u16(),
                region_len: r.u64(),
            })
        }
        kind::CLOSE => {
            at_least(k, body, 2)?;
            let code = r.u8();
            let message = String::from_utf8_lossy(r.rest()).into_owned();
            Ok(Response::Close { code, message })
        }
        kind::COMPLETION => {
            at_least(k, body, 1 + 8 + 1 + 1)?;
            let wr = r.u64();
            let verb = verb_of(r.u8())?;
            let st = r.u8();
            let rest = r.rest();
            let bad = || FrameError::BadLength {
                kind: k,
                len: body.len(),
            };
            let mut p = Reader { rest };
            let result = match st {
                status::OK => Ok(match verb {
                    VerbKind::Read | VerbKind::Rpc => Payload::Bytes(rest),
                    VerbKind::Write if rest.is_empty() => Payload::None,
                    VerbKind::Cas | VerbKind::Faa if rest.len() == 8 => Payload::Word(p.u64()),
                    _ => return Err(bad()),
                }),
                status::OUT_OF_BOUNDS if rest.len() == 24 => Err(VerbError::OutOfBounds {
                    offset: p.u64(),
                    len: p.u64(),
                    region: p.u64(),
                }),
                status::MISALIGNED if rest.len() == 8 => Err(VerbError::Misaligned(p.u64())),
                status::TOO_LARGE if rest.len() == 8 => Err(VerbError::TooLarge(p.u64())),
                status::REFUSED => Err(VerbError::Refused(
                    String::from_utf8_lossy(rest).into_owned(),
                )),
                status::DISCONNECTED => Err(VerbError::Disconnected(
                    String::from_utf8_lossy(rest).into_owned(),
                )),
                status::OUT_OF_BOUNDS | status::MISALIGNED | status::TOO_LARGE => {
                    return Err(bad());
                }
                other => return Err(FrameError::BadStatus(other)),
            };
            Ok(Response::Completion {
                wr,
                kind: verb,
                result,
            })
        }
        other => Err(FrameError::UnknownKind(other)),
    }
}

/// Starts a frame: reserves the length prefix and returns where it is, for [`end_frame`].
fn begin_frame(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; LEN_BYTES]);
    at
}

/// Fills in the length prefix of the frame begun at `at`.
fn end_frame(out: &mut [u8], at: usize) {
    let body = out.len() - at - LEN_BYTES;
    debug_assert!(body <= FRAME_BODY_BYTES_MAX);
    out[at..at + LEN_BYTES].copy_from_slice(&(body as u32).to_le_bytes());
}

/// Text cut to [`MESSAGE_BYTES_MAX`] on a character boundary.
fn clip(message: &str) -> &str {
    if message.len() <= MESSAGE_BYTES_MAX {
        return message;
    }
    let mut end = MESSAGE_BYTES_MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// Appends a HELLO frame. The token must be at most [`TOKEN_BYTES_MAX`] bytes (the client
/// checks this before connecting).
pub fn put_hello(out: &mut Vec<u8>, version: u16, token: &[u8]) {
    let token = &token[..token.len().min(TOKEN_BYTES_MAX)];
    let at = begin_frame(out);
    out.push(kind::HELLO);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(token.len() as u16).to_le_bytes());
    out.extend_from_slice(token);
    end_frame(out, at);
}

/// Whether a verb fits in a request frame; the client completes one that does not with an
/// error instead of sending it.
pub fn request_fits(verb: &Verb) -> Result<(), VerbError> {
    match verb {
        Verb::Write { data, .. } if data.len() as u64 > VERB_BYTES_MAX => {
            Err(VerbError::TooLarge(data.len() as u64))
        }
        Verb::Rpc { request } if request.len() as u64 > RPC_BYTES_MAX => {
            Err(VerbError::TooLarge(request.len() as u64))
        }
        _ => Ok(()),
    }
}

/// Appends the request frame of one verb; the verb must pass [`request_fits`].
pub fn put_request(out: &mut Vec<u8>, wr: WrId, verb: &Verb) {
    let at = begin_frame(out);
    match verb {
        Verb::Read { remote, len } => {
            out.push(kind::READ);
            out.extend_from_slice(&wr.0.to_le_bytes());
            out.extend_from_slice(&remote.get().to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
        }
        Verb::Write {
            remote,
            data,
            persist,
        } => {
            out.push(kind::WRITE);
            out.extend_from_slice(&wr.0.to_le_bytes());
            out.extend_from_slice(&remote.get().to_le_bytes());
            out.push(u8::from(*persist));
            out.extend_from_slice(data);
        }
        Verb::Cas {
            remote,
            expected,
            new,
        } => {
            out.push(kind::CAS);
            out.extend_from_slice(&wr.0.to_le_bytes());
            out.extend_from_slice(&remote.get().to_le_bytes());
            out.extend_from_slice(&expected.to_le_bytes());
            out.extend_from_slice(&new.to_le_bytes());
        }
        Verb::Faa { remote, add } => {
            out.push(kind::FAA);
            out.extend_from_slice(&wr.0.to_le_bytes());
            out.extend_from_slice(&remote.get().to_le_bytes());
            out.extend_from_slice(&add.to_le_bytes());
        }
        Verb::Rpc { request } => {
            out.push(kind::RPC);
            out.extend_from_slice(&wr.0.to_le_bytes());
            out.extend_from_slice(request);
        }
    }
    end_frame(out, at);
}

/// Appends a WELCOME frame.
pub fn put_welcome(out: &mut Vec<u8>, version: u16, region_len: u64) {
    let at = begin_frame(out);
    out.push(kind::WELCOME);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&region_len.to_le_bytes());
    end_frame(out, at);
}

/// Appends a CLOSE frame.
pub fn put_close(out: &mut Vec<u8>, code: CloseCode, message: &str) {
    let at = begin_frame(out);
    out.push(kind::CLOSE);
    out.push(code as u8);
    out.extend_from_slice(clip(message).as_bytes());
    end_frame(out, at);
}

fn completion_header(out: &mut Vec<u8>, wr: u64, verb: VerbKind, st: u8) -> usize {
    let at = begin_frame(out);
    out.push(kind::COMPLETION);
    out.extend_from_slice(&wr.to_le_bytes());
    out.push(verb as u8);
    out.push(st);
    at
}

/// Appends a successful completion without payload (WRITE).
pub fn put_done(out: &mut Vec<u8>, wr: u64, verb: VerbKind) {
    let at = completion_header(out, wr, verb, status::OK);
    end_frame(out, at);
}

/// Appends a successful CAS or FAA completion with the word's old value.
pub fn put_word(out: &mut Vec<u8>, wr: u64, verb: VerbKind, word: u64) {
    let at = completion_header(out, wr, verb, status::OK);
    out.extend_from_slice(&word.to_le_bytes());
    end_frame(out, at);
}

/// Appends a successful READ or RPC completion whose `len` payload bytes `fill` writes in place
/// (so that a READ copies pool bytes straight into the send buffer). `len` must be at most
/// [`VERB_BYTES_MAX`].
pub fn put_bytes_with(
    out: &mut Vec<u8>,
    wr: u64,
    verb: VerbKind,
    len: usize,
    fill: impl FnOnce(&mut [u8]),
) {
    let at = completion_header(out, wr, verb, status::OK);
    let start = out.len();
    out.resize(start + len, 0);
    fill(&mut out[start..]);
    end_frame(out, at);
}

/// Appends a failed completion.
pub fn put_error(out: &mut Vec<u8>, wr: u64, verb: VerbKind, error: &VerbError) {
    let (st, words, text): (u8, [Option<u64>; 3], &str) = match error {
        VerbError::OutOfBounds {
            offset,
            len,
            region,
        } => (
            status::OUT_OF_BOUNDS,
            [Some(*offset), Some(*len), Some(*region)],
            "",
        ),
        VerbError::Misaligned(offset) => (status::MISALIGNED, [Some(*offset), None, None], ""),
        VerbError::TooLarge(bytes) => (status::TOO_LARGE, [Some(*bytes), None, None], ""),
        VerbError::Refused(m) => (status::REFUSED, [None; 3], m.as_str()),
        VerbError::Disconnected(m) => (status::DISCONNECTED, [None; 3], m.as_str()),
    };
    let at = completion_header(out, wr, verb, st);
    for w in words.into_iter().flatten() {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(clip(text).as_bytes());
    end_frame(out, at);
}

/// Compares two byte strings in time that depends on their lengths only, not on where they
/// differ, so that a client cannot find the cluster token byte by byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use dinomo_pmem::PoolOffset;
    use proptest::prelude::*;

    use super::*;

    fn body(frame: &[u8]) -> &[u8] {
        assert_eq!(body_len(frame), Some(frame.len() - LEN_BYTES));
        &frame[LEN_BYTES..]
    }

    #[test]
    fn requests_round_trip() {
        let verbs = [
            Verb::Read {
                remote: PoolOffset(64),
                len: 100,
            },
            Verb::Write {
                remote: PoolOffset(8),
                data: vec![1, 2, 3],
                persist: true,
            },
            Verb::Cas {
                remote: PoolOffset(16),
                expected: 5,
                new: 6,
            },
            Verb::Faa {
                remote: PoolOffset(24),
                add: u64::MAX,
            },
            Verb::Rpc {
                request: b"merge".to_vec(),
            },
        ];
        for (i, verb) in verbs.iter().enumerate() {
            let mut out = Vec::new();
            put_request(&mut out, WrId(i as u64), verb);
            let decoded = decode_request(body(&out)).unwrap();
            let wr = i as u64;
            let expected = match verb {
                Verb::Read { remote, len } => Request::Read {
                    wr,
                    remote: remote.get(),
                    len: *len,
                },
                Verb::Write {
                    remote,
                    data,
                    persist,
                } => Request::Write {
                    wr,
                    remote: remote.get(),
                    persist: *persist,
                    data,
                },
                Verb::Cas {
                    remote,
                    expected,
                    new,
                } => Request::Cas {
                    wr,
                    remote: remote.get(),
                    expected: *expected,
                    new: *new,
                },
                Verb::Faa { remote, add } => Request::Faa {
                    wr,
                    remote: remote.get(),
                    add: *add,
                },
                Verb::Rpc { request } => Request::Rpc { wr, request },
            };
            assert_eq!(decoded, expected);
        }
    }

    #[test]
    fn hello_and_responses_round_trip() {
        let mut out = Vec::new();
        put_hello(&mut out, PROTOCOL_VERSION, b"secret");
        assert_eq!(
            decode_request(body(&out)),
            Ok(Request::Hello {
                version: PROTOCOL_VERSION,
                token: b"secret"
            })
        );
        let errors = [
            VerbError::OutOfBounds {
                offset: 1,
                len: 2,
                region: 3,
            },
            VerbError::Misaligned(9),
            VerbError::TooLarge(1 << 30),
            VerbError::Refused("busy".into()),
            VerbError::Disconnected("gone".into()),
        ];
        for e in errors {
            let mut out = Vec::new();
            put_error(&mut out, 7, VerbKind::Cas, &e);
            assert_eq!(
                decode_response(body(&out)),
                Ok(Response::Completion {
                    wr: 7,
                    kind: VerbKind::Cas,
                    result: Err(e)
                })
            );
        }
        let mut out = Vec::new();
        put_bytes_with(&mut out, 3, VerbKind::Read, 4, |b| {
            b.copy_from_slice(b"abcd")
        });
        assert_eq!(
            decode_response(body(&out)),
            Ok(Response::Completion {
                wr: 3,
                kind: VerbKind::Read,
                result: Ok(Payload::Bytes(b"abcd"))
            })
        );
        let mut out = Vec::new();
        put_close(&mut out, CloseCode::Token, &"x".repeat(10_000));
        let Ok(Response::Close { code, message }) = decode_response(body(&out)) else {
            panic!("CLOSE did not decode");
        };
        assert_eq!(CloseCode::from_u8(code), Some(CloseCode::Token));
        assert_eq!(message.len(), MESSAGE_BYTES_MAX);
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert_eq!(decode_request(&[]), Err(FrameError::Empty));
        assert_eq!(decode_request(&[0x7f]), Err(FrameError::UnknownKind(0x7f)));
        assert!(matches!(
            decode_request(&[kind::READ, 1, 2]),
            Err(FrameError::BadLength { .. })
        ));
        let mut w = vec![kind::WRITE];
        w.extend_from_slice(&[0; 16]);
        w.push(0x80);
        assert_eq!(decode_request(&w), Err(FrameError::BadFlags(0x80)));
        let mut h = vec![kind::HELLO];
        h.extend_from_slice(b"XXXX\x01\x00\x00\x00");
        assert_eq!(decode_request(&h), Err(FrameError::BadMagic));
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode_request(&bytes);
            let _ = decode_response(&bytes);
        }
    }
}
