//! The QP exchange of the rdma fabric (`fabric/FRAMES.md`, "RDMA QP exchange"): the bodies both
//! sides send over the exchange's TCP connection, each length-prefixed (`len: u32`), encoded and
//! decoded here and nowhere else.
//!
//! The KN sends its hello (magic, version, cluster token, its QP's information); the MN answers
//! with a welcome (its QP's information and the registered region) or a refusal with a reason.
//! Decoding is bounds-checked: a short, long or malformed body is an error or `None`, never a
//! panic.

use std::io::{self, Read, Write};
use std::net::TcpStream;

use super::{RDMA_EXCHANGE_VERSION, RdmaError};
use crate::fabric::tcp::frame::{MAGIC, TOKEN_BYTES_MAX};

/// Longest message of a refused exchange.
pub(crate) const EXCHANGE_MESSAGE_BYTES_MAX: usize = 256;

/// What one side tells the other to connect two RC queue pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QpInfo {
    pub(crate) lid: u16,
    pub(crate) qpn: u32,
    pub(crate) psn: u32,
    pub(crate) gid: [u8; 16],
}

impl QpInfo {
    pub(crate) const BYTES: usize = 2 + 4 + 4 + 16;

    pub(crate) fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.lid.to_le_bytes());
        out.extend_from_slice(&self.qpn.to_le_bytes());
        out.extend_from_slice(&self.psn.to_le_bytes());
        out.extend_from_slice(&self.gid);
    }

    pub(crate) fn get(b: &[u8]) -> Option<QpInfo> {
        if b.len() < Self::BYTES {
            return None;
        }
        Some(QpInfo {
            lid: u16::from_le_bytes(b[0..2].try_into().ok()?),
            qpn: u32::from_le_bytes(b[2..6].try_into().ok()?),
            psn: u32::from_le_bytes(b[6..10].try_into().ok()?) & 0xff_ffff,
            gid: b[10..26].try_into().ok()?,
        })
    }
}

pub(crate) fn write_exchange(stream: &mut TcpStream, body: &[u8]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(body);
    stream.write_all(&frame)
}

pub(crate) fn read_exchange(stream: &mut TcpStream, max: usize) -> Result<Vec<u8>, RdmaError> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix)?;
    let len = u32::from_le_bytes(prefix) as usize;
    if len > max {
        return Err(RdmaError::Exchange(format!("a frame of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok(body)
}

pub(crate) fn hello_bytes_max() -> usize {
    4 + 2 + 2 + TOKEN_BYTES_MAX + QpInfo::BYTES
}

/// The KN's request: magic, version, token, its QP's information.
pub(crate) fn put_hello(token: &[u8], info: &QpInfo) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&RDMA_EXCHANGE_VERSION.to_le_bytes());
    out.extend_from_slice(&(token.len() as u16).to_le_bytes());
    out.extend_from_slice(token);
    info.put(&mut out);
    out
}

pub(crate) fn get_hello(body: &[u8]) -> Option<(u16, &[u8], QpInfo)> {
    if body.get(..4)? != MAGIC {
        return None;
    }
    let version = u16::from_le_bytes(body.get(4..6)?.try_into().ok()?);
    let token_len = usize::from(u16::from_le_bytes(body.get(6..8)?.try_into().ok()?));
    let token = body.get(8..8 + token_len)?;
    let rest = body.get(8 + token_len..)?;
    if rest.len() != QpInfo::BYTES {
        return None;
    }
    Some((version, token, QpInfo::get(rest)?))
}

/// The MN's answer: status 0, its QP's information and the region; or a status and a reason.
pub(crate) struct Welcome {
    pub(crate) info: QpInfo,
    pub(crate) addr: u64,
    pub(crate) rkey: u32,
    pub(crate) len: u64,
}

pub(crate) fn put_welcome(w: &Welcome) -> Vec<u8> {
    let mut out = vec![0u8];
    w.info.put(&mut out);
    out.extend_from_slice(&w.addr.to_le_bytes());
    out.extend_from_slice(&w.rkey.to_le_bytes());
    out.extend_from_slice(&w.len.to_le_bytes());
    out
}

pub(crate) fn put_refusal(message: &str) -> Vec<u8> {
    let mut out = vec![1u8];
    let mut end = message.len().min(EXCHANGE_MESSAGE_BYTES_MAX);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&message.as_bytes()[..end]);
    out
}

pub(crate) fn get_welcome(body: &[u8]) -> Result<Welcome, RdmaError> {
    match body.split_first() {
        Some((0, rest)) if rest.len() == QpInfo::BYTES + 8 + 4 + 8 => {
            let info = QpInfo::get(rest).ok_or_else(|| RdmaError::Exchange("bad answer".into()))?;
            let r = &rest[QpInfo::BYTES..];
            let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
            Ok(Welcome {
                info,
                addr: word(&r[0..8]),
                rkey: u32::from_le_bytes(r[8..12].try_into().unwrap_or([0; 4])),
                len: word(&r[12..20]),
            })
        }
        Some((_, rest)) => Err(RdmaError::Exchange(format!(
            "refused by the memory node: {}",
            String::from_utf8_lossy(rest)
        ))),
        None => Err(RdmaError::Exchange("an empty answer".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_messages_round_trip() {
        let info = QpInfo {
            lid: 7,
            qpn: 0x12_3456,
            psn: 0xab_cdef,
            gid: [3; 16],
        };
        let hello = put_hello(b"token", &info);
        assert_eq!(
            get_hello(&hello),
            Some((RDMA_EXCHANGE_VERSION, &b"token"[..], info))
        );
        assert_eq!(get_hello(&hello[..hello.len() - 1]), None);
        let welcome = put_welcome(&Welcome {
            info,
            addr: 0x7f00_0000_0000,
            rkey: 99,
            len: 1 << 30,
        });
        let back = get_welcome(&welcome).unwrap();
        assert_eq!(
            (back.info, back.addr, back.rkey, back.len),
            (info, 0x7f00_0000_0000, 99, 1 << 30)
        );
        assert!(
            matches!(get_welcome(&put_refusal("no")), Err(RdmaError::Exchange(m)) if m.contains("no"))
        );
        assert!(get_welcome(&[]).is_err());
    }
}
