//! The `resp://HOST:PORT` target: a small pipelined RESP client over `std::net::TcpStream`.
//!
//! Each [`RespConnection`] is one TCP connection used by one thread. Requests are encoded into an
//! output buffer and written by `flush`; replies are read into a receive buffer and parsed
//! incrementally with [`crate::resp::parse_frame`], which leaves a partial reply in the buffer until
//! the rest arrives. Replies are matched to requests by order, as RESP requires.
//!
//! Bounds: at most `in_flight_max` requests outstanding, so the output buffer holds at most that
//! many requests; the receive buffer starts at [`RECEIVE_BUFFER_BYTES_INITIAL`] and grows only while
//! one reply does not fit, up to [`RECEIVE_BUFFER_BYTES_MAX`]; reads and writes time out after
//! [`REPLY_TIMEOUT`], so a stuck server ends the run with an error instead of hanging it.
//!
//! The target's counters come from `INFO dinomo` ([`crate::info`]); a server without that section
//! (Redis) reports none.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::constants::{
    CONNECT_TIMEOUT, ERROR_TEXT_BYTES_MAX, RECEIVE_BUFFER_BYTES_INITIAL, RECEIVE_BUFFER_BYTES_MAX,
    REPLY_TIMEOUT,
};
use crate::info::{DinomoStats, parse_info};
use crate::resp::{Frame, RespError, encode_command, parse_frame};
use crate::target::{Command, Connection, Reply, Target, TargetError};

/// A RESP server at a socket address.
#[derive(Debug, Clone)]
pub struct RespTarget {
    addr: SocketAddr,
    label: String,
}

impl RespTarget {
    /// A target at `addr`, named `resp://addr` in reports.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            label: format!("resp://{addr}"),
        }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The text of `INFO section`, or `None` when the server answers with an error.
    pub fn info(&self, section: &str) -> Result<Option<String>, TargetError> {
        let mut connection = RespConnection::connect(self.addr, 1)?;
        match connection.call(&[b"INFO", section.as_bytes()])? {
            CallReply::Text(text) => Ok(Some(String::from_utf8_lossy(&text).into_owned())),
            CallReply::Error(_) => Ok(None),
            other => Err(TargetError::UnexpectedReply {
                addr: self.addr.to_string(),
                command: "INFO",
                reply: format!("{other:?}"),
            }),
        }
    }
}

impl Target for RespTarget {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn connect(&self, in_flight_max: usize) -> Result<Box<dyn Connection + '_>, TargetError> {
        Ok(Box::new(RespConnection::connect(self.addr, in_flight_max)?))
    }

    fn stats(&self) -> Result<Option<DinomoStats>, TargetError> {
        let Some(text) = self.info("dinomo")? else {
            return Ok(None);
        };
        let addr = self.addr.to_string();
        let info = parse_info(&text).map_err(|source| TargetError::Info {
            addr: addr.clone(),
            source,
        })?;
        DinomoStats::from_info(&info).map_err(|source| TargetError::Info { addr, source })
    }

    fn server_version(&self) -> Result<Option<String>, TargetError> {
        let Some(text) = self.info("server")? else {
            return Ok(None);
        };
        let Ok(info) = parse_info(&text) else {
            return Ok(None);
        };
        Ok(["dinomo_version", "redis_version"]
            .iter()
            .find_map(|field| {
                info.field("server", field)
                    .map(|version| format!("{field} {version}"))
            }))
    }
}

/// A reply to [`RespConnection::call`], owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallReply {
    /// A simple string, bulk string or verbatim text.
    Text(Vec<u8>),
    /// An error reply.
    Error(String),
    /// A null.
    Nil,
    /// Any other reply, as its debug form.
    Other(String),
}

/// One pipelined RESP connection.
#[derive(Debug)]
pub struct RespConnection {
    stream: TcpStream,
    addr: String,
    /// Encoded requests not yet written.
    out: Vec<u8>,
    /// Received bytes; `buf[start..end]` is not parsed yet.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    in_flight: usize,
    in_flight_max: usize,
}

impl RespConnection {
    /// Connects to `addr` with at most `in_flight_max` requests outstanding (at least 1).
    pub fn connect(addr: SocketAddr, in_flight_max: usize) -> Result<Self, TargetError> {
        let name = addr.to_string();
        let connect = |source| TargetError::Connect {
            addr: name.clone(),
            source,
        };
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(connect)?;
        stream.set_nodelay(true).map_err(connect)?;
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(connect)?;
        stream
            .set_write_timeout(Some(REPLY_TIMEOUT))
            .map_err(connect)?;
        Ok(Self {
            stream,
            addr: name,
            out: Vec::new(),
            buf: vec![0; RECEIVE_BUFFER_BYTES_INITIAL],
            start: 0,
            end: 0,
            in_flight: 0,
            in_flight_max: in_flight_max.max(1),
        })
    }

    fn io_error(&self, source: std::io::Error) -> TargetError {
        match source.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => TargetError::Timeout {
                addr: self.addr.clone(),
                timeout: REPLY_TIMEOUT,
            },
            _ => TargetError::Io {
                addr: self.addr.clone(),
                source,
            },
        }
    }

    fn protocol_error(&self, source: RespError) -> TargetError {
        TargetError::Protocol {
            addr: self.addr.clone(),
            source,
        }
    }

    /// Queues one command given as its arguments.
    fn send_args(&mut self, args: &[&[u8]]) -> Result<(), TargetError> {
        if self.in_flight >= self.in_flight_max {
            return Err(TargetError::InFlightFull {
                in_flight: self.in_flight,
            });
        }
        encode_command(&mut self.out, args);
        self.in_flight += 1;
        Ok(())
    }

    /// Reads more bytes into the receive buffer, making room first.
    fn read_more(&mut self) -> Result<(), TargetError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < RECEIVE_BUFFER_BYTES_MAX {
                let grown = (self.buf.len() * 2).min(RECEIVE_BUFFER_BYTES_MAX);
                self.buf.resize(grown, 0);
            } else {
                return Err(self.protocol_error(RespError::TooLarge {
                    what: "reply",
                    len: self.buf.len() as u64,
                    limit: RECEIVE_BUFFER_BYTES_MAX as u64,
                }));
            }
        }
        loop {
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    return Err(TargetError::Closed {
                        addr: self.addr.clone(),
                        in_flight: self.in_flight,
                    });
                }
                Ok(read) => {
                    self.end += read;
                    return Ok(());
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(self.io_error(error)),
            }
        }
    }

    /// Parses the next complete reply in the buffer into `convert`'s result, or `None` if more
    /// bytes are needed.
    fn next_reply<T>(
        &mut self,
        convert: impl FnOnce(Frame<'_>) -> T,
    ) -> Result<Option<T>, TargetError> {
        match parse_frame(&self.buf[self.start..self.end]) {
            Ok(Some((frame, used))) => {
                let value = convert(frame);
                self.start += used;
                Ok(Some(value))
            }
            Ok(None) => Ok(None),
            Err(source) => Err(self.protocol_error(source)),
        }
    }

    /// Sends one command and waits for its reply. Only for a connection with nothing else in flight.
    pub fn call(&mut self, args: &[&[u8]]) -> Result<CallReply, TargetError> {
        self.send_args(args)?;
        self.flush()?;
        loop {
            let reply = self.next_reply(|frame| match frame {
                Frame::Push(_) => None,
                Frame::Simple(text) | Frame::Bulk(text) | Frame::Verbatim { text, .. } => {
                    Some(CallReply::Text(text.to_vec()))
                }
                Frame::Error(text) => Some(CallReply::Error(error_text(text))),
                Frame::Null => Some(CallReply::Nil),
                other => Some(CallReply::Other(format!("{other:?}"))),
            })?;
            match reply {
                Some(Some(reply)) => {
                    self.in_flight -= 1;
                    return Ok(reply);
                }
                Some(None) => {}
                None => self.read_more()?,
            }
        }
    }
}

/// An error reply's text, cut to [`ERROR_TEXT_BYTES_MAX`] bytes.
fn error_text(text: &[u8]) -> String {
    String::from_utf8_lossy(&text[..text.len().min(ERROR_TEXT_BYTES_MAX)]).into_owned()
}

impl Connection for RespConnection {
    fn send(&mut self, command: Command<'_>) -> Result<(), TargetError> {
        match command {
            Command::Get { key } => self.send_args(&[b"GET", key]),
            Command::Set { key, value } => self.send_args(&[b"SET", key, value]),
        }
    }

    fn flush(&mut self) -> Result<(), TargetError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.out);
        self.out.clear();
        result.map_err(|error| self.io_error(error))
    }

    fn recv(&mut self, replies: &mut Vec<Reply>, max: usize) -> Result<usize, TargetError> {
        if self.in_flight == 0 || max == 0 {
            return Ok(0);
        }
        // Requests still queued would never be answered: send them first.
        self.flush()?;
        let mut received = 0;
        loop {
            while received < max && self.in_flight > 0 {
                let reply = self.next_reply(|frame| match frame {
                    // A push answers no request.
                    Frame::Push(_) => None,
                    Frame::Null => Some(Reply::Nil),
                    Frame::Bulk(value) => Some(Reply::Value { len: value.len() }),
                    Frame::Verbatim { text, .. } => Some(Reply::Value { len: text.len() }),
                    Frame::Error(text) => Some(Reply::Error(error_text(text))),
                    _ => Some(Reply::Done),
                })?;
                match reply {
                    Some(Some(reply)) => {
                        replies.push(reply);
                        received += 1;
                        self.in_flight -= 1;
                    }
                    Some(None) => {}
                    None => break,
                }
            }
            if received > 0 {
                return Ok(received);
            }
            self.read_more()?;
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;

    use super::*;

    /// A one-connection server that answers every request with the next canned bytes, written in
    /// small pieces to exercise partial reads.
    fn canned_server(responses: Vec<&'static [u8]>) -> (SocketAddr, thread::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut pending = Vec::new();
            let mut answered = 0;
            let mut chunk = [0u8; 4096];
            let mut responses = responses.into_iter();
            loop {
                let read = match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return answered,
                    Ok(read) => read,
                };
                pending.extend_from_slice(&chunk[..read]);
                while let Ok(Some((_, used))) = parse_frame(&pending) {
                    pending.drain(..used);
                    let Some(response) = responses.next() else {
                        return answered;
                    };
                    for piece in response.chunks(3) {
                        stream.write_all(piece).unwrap();
                        stream.flush().unwrap();
                    }
                    answered += 1;
                }
            }
        });
        (addr, handle)
    }

    #[test]
    fn pipelined_replies_in_order_across_partial_reads() {
        let (addr, server) = canned_server(vec![
            b"+OK\r\n",
            b"$5\r\nhello\r\n",
            b"$-1\r\n",
            b"-ERR out of memory\r\n",
            b">2\r\n+pushed\r\n:1\r\n:7\r\n",
        ]);
        let mut connection = RespConnection::connect(addr, 5).unwrap();
        connection
            .send(Command::Set {
                key: b"k",
                value: b"v",
            })
            .unwrap();
        for _ in 0..4 {
            connection.send(Command::Get { key: b"k" }).unwrap();
        }
        assert!(matches!(
            connection.send(Command::Get { key: b"k" }),
            Err(TargetError::InFlightFull { in_flight: 5 })
        ));
        let mut replies = Vec::new();
        while connection.in_flight() > 0 {
            connection.recv(&mut replies, 2).unwrap();
        }
        assert_eq!(
            replies,
            vec![
                Reply::Done,
                Reply::Value { len: 5 },
                Reply::Nil,
                Reply::Error("ERR out of memory".into()),
                Reply::Done,
            ]
        );
        assert_eq!(connection.recv(&mut replies, 2).unwrap(), 0);
        drop(connection);
        assert_eq!(server.join().unwrap(), 5);
    }

    #[test]
    fn malformed_reply_is_an_error() {
        let (addr, _server) = canned_server(vec![b"?what\r\n"]);
        let mut connection = RespConnection::connect(addr, 1).unwrap();
        connection.send(Command::Get { key: b"k" }).unwrap();
        let mut replies = Vec::new();
        assert!(matches!(
            connection.recv(&mut replies, 1),
            Err(TargetError::Protocol { .. })
        ));
    }

    #[test]
    fn closed_connection_is_an_error() {
        let (addr, _server) = canned_server(vec![]);
        let mut connection = RespConnection::connect(addr, 1).unwrap();
        connection.send(Command::Get { key: b"k" }).unwrap();
        let mut replies = Vec::new();
        assert!(matches!(
            connection.recv(&mut replies, 1),
            Err(TargetError::Closed { in_flight: 1, .. })
        ));
    }

    #[test]
    fn info_sections_through_call() {
        let (addr, _server) = canned_server(vec![
            b"$40\r\n# Dinomo\r\nround_trips:12\r\nverbs_read:7\r\n\r\n",
        ]);
        let stats = RespTarget::new(addr).stats().unwrap().unwrap();
        assert_eq!(stats.counter("round_trips"), Some(12));
        assert_eq!(stats.counter("verbs_read"), Some(7));
        let (addr, _server) = canned_server(vec![b"$0\r\n\r\n"]);
        assert_eq!(RespTarget::new(addr).stats().unwrap(), None);
        let (addr, _server) = canned_server(vec![b"-ERR unknown command\r\n"]);
        assert_eq!(RespTarget::new(addr).stats().unwrap(), None);
    }
}
