//! [`Session`]: one client connection's protocol state, independent of sockets — parsing
//! pipelined RESP requests, answering administrative commands, splitting key commands into
//! single-key engine commands, and putting the replies back together in request order.
//!
//! The worker owns the socket; it feeds received bytes in ([`Session::feed`]), lets the session
//! run ([`Session::process`], which hands key commands to a [`Dispatch`]), delivers engine
//! replies ([`Session::complete`]) and sends what [`Session::take_output`] gives it.
//!
//! Limits: at most [`PIPELINE_MAX`] requests of one connection wait for replies (more input is
//! left unparsed until replies drain), the receive buffer is bounded by the parser's limits and
//! [`QUERY_BUFFER_MAX`], and a protocol error is answered and closes the connection, as in Redis.

use std::collections::VecDeque;

use crate::kn::engine::{Command, EngineError, Reply, SetCond};
use crate::kn::routing::Routing;
use crate::resp::commands::{
    CommandError, CommandId, parse_i64_arg, reply_command, unknown_command_message,
    unknown_subcommand_message,
};
use crate::resp::hello::HelloOptions;
use crate::resp::set::{SetCondition, SetExpiry, SetOptions};
use crate::resp::{Argv, Limits, Parsed, Protocol, ReplyWriter, RequestParser, lookup};

/// Requests of one connection waiting for their replies at most.
pub const PIPELINE_MAX: usize = 1024;
/// Bytes one connection may have received and not yet consumed.
pub const QUERY_BUFFER_MAX: usize = 64 << 20;
/// Encoded replies one connection may hold before it stops reading requests.
pub const OUTPUT_BUFFER_MAX: usize = 64 << 20;
/// Keys of one multi-key command at most.
pub const MULTI_KEYS_MAX: usize = 1 << 16;

/// What the session needs from the server around it.
pub trait Dispatch {
    /// Hands a single-key command to the core that owns the key. Its reply must come back through
    /// [`Session::complete`] with the same `seq` and `part`.
    fn submit(&mut self, seq: u64, part: u32, cmd: Command);
    /// The `INFO` text for these sections (empty: the default set).
    fn info(&mut self, sections: &[Vec<u8>]) -> String;
    /// `CLUSTER` subcommands; `None` for an unknown subcommand.
    fn cluster(&mut self, subcommand: &[u8], w: &mut ReplyWriter<'_>) -> Option<()>;
    /// The password `AUTH` checks, if any.
    fn requirepass(&self) -> Option<&[u8]>;
    /// This connection's id (for `HELLO`).
    fn client_id(&self) -> u64;
}

/// How the replies of a split command combine.
#[derive(Debug)]
enum Join {
    /// GET, SET (and its options), one reply passed through.
    Single,
    /// MGET: an array of values.
    Values,
    /// DEL, EXISTS: the sum of the integers.
    Sum,
    /// MSET: OK once every part is written.
    AllOk,
}

#[derive(Debug)]
enum Slot {
    Ready(Vec<u8>),
    Waiting {
        join: Join,
        parts: Vec<Option<Reply>>,
        left: u32,
    },
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct Session {
    parser: RequestParser,
    protocol: Protocol,
    authenticated: bool,
    input: Vec<u8>,
    output: Vec<u8>,
    slots: VecDeque<Slot>,
    /// Sequence number of the front slot.
    head_seq: u64,
    closing: bool,
    /// The last parse stopped at an incomplete request: nothing to do until more bytes come.
    incomplete: bool,
    name: Option<Vec<u8>>,
}

impl Session {
    pub fn new(limits: Limits, password_required: bool) -> Session {
        Session {
            parser: RequestParser::new(limits),
            protocol: Protocol::Resp2,
            authenticated: !password_required,
            input: Vec::new(),
            output: Vec::new(),
            slots: VecDeque::new(),
            head_seq: 0,
            closing: false,
            incomplete: false,
            name: None,
        }
    }

    /// Appends received bytes. Returns false if the connection must be closed because the client
    /// sent more than a request may hold.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        if self.input.len() + bytes.len() > QUERY_BUFFER_MAX {
            self.protocol_error(b"ERR Protocol error: too big request");
            return false;
        }
        self.input.extend_from_slice(bytes);
        self.incomplete = false;
        true
    }

    /// Whether received requests wait to be parsed (held back by the pipeline or output limit).
    pub fn has_unparsed_input(&self) -> bool {
        !self.input.is_empty() && !self.incomplete && !self.closing
    }

    /// Whether the session wants more input (it is below its pipeline and output limits).
    pub fn wants_input(&self) -> bool {
        !self.closing && self.slots.len() < PIPELINE_MAX && self.output.len() < OUTPUT_BUFFER_MAX
    }

    /// Whether the connection should be closed once its output is sent.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Requests waiting for replies.
    pub fn pending(&self) -> usize {
        self.slots.len()
    }

    /// Encoded replies ready to send, in order.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Parses and starts every complete request, within the limits.
    pub fn process(&mut self, dispatch: &mut dyn Dispatch) {
        let mut consumed_total = 0usize;
        while self.wants_input() {
            let rest = &self.input[consumed_total..];
            match self.parser.parse(rest) {
                Ok(Parsed::Incomplete { .. }) => {
                    self.incomplete = true;
                    break;
                }
                Ok(Parsed::Empty { consumed }) => consumed_total += consumed,
                Ok(Parsed::Request { request, consumed }) => {
                    let input = std::mem::take(&mut self.input);
                    let argv = request.argv(&input[consumed_total..]);
                    self.execute(&argv, dispatch);
                    self.input = input;
                    consumed_total += consumed;
                }
                Err(e) => {
                    self.protocol_error(e.to_string().as_bytes());
                    break;
                }
            }
        }
        self.input.drain(..consumed_total);
        self.flush_ready();
    }

    /// Delivers the reply of part `part` of request `seq`; `routing` names the owner of a slot
    /// the reply says moved.
    pub fn complete(&mut self, seq: u64, part: u32, reply: Reply, routing: &Routing) {
        let Some(index) = seq.checked_sub(self.head_seq) else {
            return;
        };
        let Some(Slot::Waiting { parts, left, .. }) = self.slots.get_mut(index as usize) else {
            return;
        };
        let Some(p) = parts.get_mut(part as usize) else {
            return;
        };
        if p.is_none() {
            *p = Some(reply);
            *left -= 1;
        }
        if *left == 0 {
            let Some(Slot::Waiting { join, parts, .. }) = self.slots.get_mut(index as usize) else {
                return;
            };
            let join = std::mem::replace(join, Join::Single);
            let parts = std::mem::take(parts);
            let bytes = self.encode_join(join, parts, routing);
            self.slots[index as usize] = Slot::Ready(bytes);
        }
        self.flush_ready();
    }

    fn flush_ready(&mut self) {
        while let Some(Slot::Ready(_)) = self.slots.front() {
            if let Some(Slot::Ready(bytes)) = self.slots.pop_front() {
                self.output.extend_from_slice(&bytes);
                self.head_seq += 1;
            }
        }
    }

    fn protocol_error(&mut self, message: &[u8]) {
        let mut out = Vec::new();
        ReplyWriter::new(&mut out, self.protocol).error(message);
        self.slots.push_back(Slot::Ready(out));
        self.closing = true;
        self.flush_ready();
    }

    fn ready(&mut self, f: impl FnOnce(&mut ReplyWriter<'_>)) {
        let mut out = Vec::new();
        f(&mut ReplyWriter::new(&mut out, self.protocol));
        self.slots.push_back(Slot::Ready(out));
    }

    fn error(&mut self, e: &impl std::fmt::Display) {
        self.ready(|w| w.error_display(e));
    }

    fn next_seq(&self) -> u64 {
        self.head_seq + self.slots.len() as u64
    }

    /// Queues a split command: its parts go to the dispatcher now.
    fn split(&mut self, join: Join, cmds: Vec<Command>, dispatch: &mut dyn Dispatch) {
        let seq = self.next_seq();
        let n = cmds.len();
        self.slots.push_back(Slot::Waiting {
            join,
            parts: (0..n).map(|_| None).collect(),
            left: n as u32,
        });
        for (part, cmd) in cmds.into_iter().enumerate() {
            dispatch.submit(seq, part as u32, cmd);
        }
    }

    fn execute(&mut self, argv: &Argv<'_>, dispatch: &mut dyn Dispatch) {
        let name = argv.command_name();
        let Some(spec) = lookup(name) else {
            let message = unknown_command_message(argv.iter());
            self.ready(|w| w.error(&message));
            return;
        };
        if let Err(e) = spec.check_arity(argv.len()) {
            self.error(&e);
            return;
        }
        if !self.authenticated
            && !matches!(
                spec.id,
                CommandId::Auth | CommandId::Hello | CommandId::Quit
            )
        {
            self.error(&CommandError::NoAuth);
            return;
        }
        let arg = |i: usize| argv.get(i).unwrap_or_default();
        match spec.id {
            CommandId::Get => {
                self.split(
                    Join::Single,
                    vec![Command::Get {
                        key: arg(1).to_vec(),
                    }],
                    dispatch,
                );
            }
            CommandId::Set => {
                let options = match SetOptions::parse(argv) {
                    Ok(o) => o,
                    Err(e) => return self.error(&e),
                };
                if matches!(
                    options.expiry,
                    SetExpiry::AfterMs(_) | SetExpiry::AtUnixMs(_)
                ) {
                    return self.ready(|w| {
                        w.error(b"ERR expiration (EX, PX, EXAT, PXAT) is not supported by dinomo")
                    });
                }
                let cond = match options.condition {
                    SetCondition::Always => SetCond::Always,
                    SetCondition::IfAbsent => SetCond::IfAbsent,
                    SetCondition::IfPresent => SetCond::IfPresent,
                };
                let cmd = Command::Set {
                    key: arg(1).to_vec(),
                    value: arg(2).to_vec(),
                    cond,
                    get: options.get,
                };
                self.split(Join::Single, vec![cmd], dispatch);
            }
            CommandId::Del | CommandId::Exists => {
                let keys: Vec<&[u8]> = argv.iter().skip(1).collect();
                if keys.len() > MULTI_KEYS_MAX {
                    return self.ready(|w| w.error(b"ERR too many keys in one command"));
                }
                let del = spec.id == CommandId::Del;
                let cmds = keys
                    .into_iter()
                    .map(|k| {
                        if del {
                            Command::Del { key: k.to_vec() }
                        } else {
                            Command::Exists { key: k.to_vec() }
                        }
                    })
                    .collect();
                self.split(Join::Sum, cmds, dispatch);
            }
            CommandId::Mget => {
                let keys: Vec<&[u8]> = argv.iter().skip(1).collect();
                if keys.len() > MULTI_KEYS_MAX {
                    return self.ready(|w| w.error(b"ERR too many keys in one command"));
                }
                let cmds = keys
                    .into_iter()
                    .map(|k| Command::Get { key: k.to_vec() })
                    .collect();
                self.split(Join::Values, cmds, dispatch);
            }
            CommandId::Mset => {
                if argv.len() % 2 != 1 {
                    return self.error(&CommandError::WrongArity("mset"));
                }
                if argv.len() / 2 > MULTI_KEYS_MAX {
                    return self.ready(|w| w.error(b"ERR too many keys in one command"));
                }
                let args: Vec<&[u8]> = argv.iter().skip(1).collect();
                let cmds = args
                    .chunks(2)
                    .map(|kv| Command::Set {
                        key: kv[0].to_vec(),
                        value: kv[1].to_vec(),
                        cond: SetCond::Always,
                        get: false,
                    })
                    .collect();
                self.split(Join::AllOk, cmds, dispatch);
            }
            CommandId::Ping => match argv.get(1) {
                None => self.ready(|w| w.simple(b"PONG")),
                Some(m) => self.ready(|w| w.bulk(m)),
            },
            CommandId::Echo => self.ready(|w| w.bulk(arg(1))),
            CommandId::Select => match parse_i64_arg(arg(1)) {
                Ok(0) => self.ready(|w| w.ok()),
                Ok(_) => self.error(&CommandError::DbIndexOutOfRange),
                Err(e) => self.error(&e),
            },
            CommandId::Auth => {
                // AUTH password, or AUTH username password with the default user.
                let (user, password) = if argv.len() == 3 {
                    (Some(arg(1)), arg(2))
                } else {
                    (None, arg(1))
                };
                match self.check_password(user, password, dispatch) {
                    Ok(()) => self.ready(|w| w.ok()),
                    Err(e) => self.error(&e),
                }
            }
            CommandId::Hello => self.hello(argv, dispatch),
            CommandId::Command => {
                let mut out = Vec::new();
                reply_command(argv, &mut ReplyWriter::new(&mut out, self.protocol));
                self.slots.push_back(Slot::Ready(out));
            }
            CommandId::Info => {
                let sections: Vec<Vec<u8>> = argv
                    .iter()
                    .skip(1)
                    .map(|s| s.to_ascii_lowercase())
                    .collect();
                let text = dispatch.info(&sections);
                self.ready(|w| w.verbatim_text(text.as_bytes()));
            }
            CommandId::Cluster => {
                let sub = arg(1).to_ascii_lowercase();
                let mut out = Vec::new();
                let known = dispatch.cluster(&sub, &mut ReplyWriter::new(&mut out, self.protocol));
                if known.is_some() {
                    self.slots.push_back(Slot::Ready(out));
                } else {
                    let message = unknown_subcommand_message(b"CLUSTER", arg(1));
                    self.ready(|w| w.error(&message));
                }
            }
            CommandId::Quit => {
                self.ready(|w| w.ok());
                self.closing = true;
            }
        }
    }

    fn check_password(
        &mut self,
        user: Option<&[u8]>,
        password: &[u8],
        dispatch: &dyn Dispatch,
    ) -> Result<(), CommandError> {
        let Some(expected) = dispatch.requirepass() else {
            return Err(CommandError::AuthWithoutPassword);
        };
        let user_ok = user.is_none_or(|u| u == b"default");
        if user_ok && constant_time_eq(expected, password) {
            self.authenticated = true;
            Ok(())
        } else {
            Err(CommandError::WrongPass)
        }
    }

    fn hello(&mut self, argv: &Argv<'_>, dispatch: &mut dyn Dispatch) {
        let options = match HelloOptions::parse(argv) {
            Ok(o) => o,
            Err(e) => return self.error(&e),
        };
        if let Some((user, password)) = options.auth {
            if let Err(e) = self.check_password(Some(user), password, dispatch) {
                return self.error(&e);
            }
        } else if !self.authenticated {
            return self.error(&CommandError::HelloNoAuth);
        }
        if let Some(protocol) = options.protocol {
            self.protocol = protocol;
        }
        if let Some(name) = options.client_name {
            self.name = (!name.is_empty()).then(|| name.to_vec());
        }
        let id = dispatch.client_id();
        let protocol = self.protocol;
        self.ready(|w| {
            w.map_header(7);
            w.bulk(b"server");
            w.bulk(b"dinomo");
            w.bulk(b"version");
            w.bulk(b"7.0.0");
            w.bulk(b"proto");
            w.integer(protocol.version());
            w.bulk(b"id");
            w.integer(id as i64);
            w.bulk(b"mode");
            w.bulk(b"cluster");
            w.bulk(b"role");
            w.bulk(b"master");
            w.bulk(b"modules");
            w.array_header(0);
        });
    }

    fn encode_join(&self, join: Join, parts: Vec<Option<Reply>>, routing: &Routing) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = ReplyWriter::new(&mut out, self.protocol);
        // A part whose slot moved, else an error in any part, is the command's reply.
        if let Some(slot) = parts.iter().find_map(|p| match p {
            Some(Reply::Moved(slot)) => Some(*slot),
            _ => None,
        }) {
            w.error(moved_text(slot, routing).as_bytes());
            return out;
        }
        if let Some(e) = parts.iter().find_map(|p| match p {
            Some(Reply::Error(e)) => Some(e.clone()),
            _ => None,
        }) {
            w.error(engine_error_text(&e).as_bytes());
            return out;
        }
        match join {
            Join::Single => match parts.into_iter().next().flatten() {
                Some(Reply::Value(Some(v))) => w.bulk(&v),
                Some(Reply::Value(None)) | Some(Reply::NotSet) => w.null(),
                Some(Reply::Ok) => w.ok(),
                Some(Reply::Int(i)) => w.integer(i),
                Some(Reply::Error(_) | Reply::Moved(_)) | None => {
                    w.error(b"ERR internal error: no reply")
                }
            },
            Join::Values => {
                w.array_header(parts.len());
                for p in parts {
                    match p {
                        Some(Reply::Value(Some(v))) => w.bulk(&v),
                        _ => w.null(),
                    }
                }
            }
            Join::Sum => {
                let sum = parts
                    .iter()
                    .map(|p| match p {
                        Some(Reply::Int(i)) => *i,
                        _ => 0,
                    })
                    .sum();
                w.integer(sum);
            }
            Join::AllOk => w.ok(),
        }
        out
    }
}

/// The redirect for a key of `slot`, as Redis Cluster words it: `MOVED slot host:port`, or
/// `CLUSTERDOWN` when no core serves the slot.
pub fn moved_text(slot: dinomo_control::Slot, routing: &Routing) -> String {
    match routing.address(slot) {
        Some(addr) => format!("MOVED {slot} {addr}"),
        None => "CLUSTERDOWN Hash slot not served".into(),
    }
}

/// The error reply text of an engine error.
pub fn engine_error_text(e: &EngineError) -> String {
    match e {
        EngineError::Busy => "BUSY too many requests in flight on this core, retry".into(),
        EngineError::TooLarge(m) => format!("ERR {m}"),
        EngineError::PoolFull => "OOM the memory pool is full".into(),
        EngineError::Failed(m) => format!("ERR this core stopped: {m}"),
        EngineError::Contended => "TRYAGAIN the index kept changing during the lookup".into(),
    }
}

/// Compares secrets without an early exit that would tell an attacker how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A dispatcher with an in-memory map that answers at once (the session's logic alone).
    #[derive(Default)]
    struct Fake {
        map: HashMap<Vec<u8>, Vec<u8>>,
        done: Vec<(u64, u32, Reply)>,
        password: Option<Vec<u8>>,
    }

    impl Dispatch for Fake {
        fn submit(&mut self, seq: u64, part: u32, cmd: Command) {
            let slot = dinomo_control::slot_of(cmd.key());
            if cmd.key().starts_with(b"far:") && slot.get() >= 8192 {
                self.done.push((seq, part, Reply::Moved(slot)));
                return;
            }
            let reply = match cmd {
                Command::Get { key } => Reply::Value(self.map.get(&key).cloned()),
                Command::Set {
                    key,
                    value,
                    cond,
                    get,
                } => {
                    let old = self.map.get(&key).cloned();
                    let write = match cond {
                        SetCond::Always => true,
                        SetCond::IfAbsent => old.is_none(),
                        SetCond::IfPresent => old.is_some(),
                    };
                    if write {
                        self.map.insert(key, value);
                    }
                    match (get, write) {
                        (true, _) => Reply::Value(old),
                        (false, true) => Reply::Ok,
                        (false, false) => Reply::NotSet,
                    }
                }
                Command::Del { key } => Reply::Int(i64::from(self.map.remove(&key).is_some())),
                Command::Exists { key } => Reply::Int(i64::from(self.map.contains_key(&key))),
            };
            self.done.push((seq, part, reply));
        }
        fn info(&mut self, _: &[Vec<u8>]) -> String {
            "# Server\r\nredis_version:7.0.0\r\n".into()
        }
        fn cluster(&mut self, sub: &[u8], w: &mut ReplyWriter<'_>) -> Option<()> {
            (sub == b"myid").then(|| w.bulk(b"abc"))
        }
        fn requirepass(&self) -> Option<&[u8]> {
            self.password.as_deref()
        }
        fn client_id(&self) -> u64 {
            7
        }
    }

    fn run(session: &mut Session, fake: &mut Fake, input: &[u8]) -> Vec<u8> {
        assert!(session.feed(input));
        session.process(fake);
        // Deliver replies in reverse order: the session must restore request order.
        let routing = two_node_routing();
        for (seq, part, reply) in std::mem::take(&mut fake.done).into_iter().rev() {
            session.complete(seq, part, reply, &routing);
        }
        session.take_output()
    }

    /// Node 1 (this one, 127.0.0.1:7001) serves slots 0..=8191, node 2 (10.0.0.2:7101) the rest.
    fn two_node_routing() -> Routing {
        use dinomo_control::{
            ChainId, ClusterMap, CoreId, CoreInfo, Epoch, Incarnation, KnId, NodeInfo, Owner,
            SlotRange,
        };
        let node = |kn: u32, host: &str| NodeInfo {
            kn: KnId(kn),
            incarnation: Incarnation(u64::from(kn)),
            host: host.into(),
            cores: vec![CoreInfo {
                core: CoreId(0),
                port: 7000 + 100 * (kn as u16 - 1) + 1,
                chain: ChainId(kn),
            }],
        };
        let half = |kn: u32, start: u16, end: u16| SlotRange {
            start: dinomo_control::Slot::new(start).unwrap(),
            end: dinomo_control::Slot::new(end).unwrap(),
            owner: Owner {
                kn: KnId(kn),
                core: CoreId(0),
            },
        };
        let map = ClusterMap::new(
            Epoch(1),
            vec![node(1, "127.0.0.1"), node(2, "10.0.0.2")],
            vec![half(1, 0, 8191), half(2, 8192, 16383)],
            Vec::new(),
        )
        .unwrap();
        Routing::new(std::sync::Arc::new(map), KnId(1), &[CoreId(0)])
    }

    fn cmd(args: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend(format!("${}\r\n", a.len()).bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn pipelined_commands_reply_in_order() {
        let (mut s, mut f) = (Session::new(Limits::default(), false), Fake::default());
        let mut input = cmd(&[b"SET", b"a", b"1"]);
        input.extend(cmd(&[b"GET", b"a"]));
        input.extend(cmd(&[b"MSET", b"b", b"2", b"c", b"3"]));
        input.extend(cmd(&[b"MGET", b"a", b"b", b"x", b"c"]));
        input.extend(cmd(&[b"DEL", b"a", b"x", b"b"]));
        input.extend(cmd(&[b"EXISTS", b"a", b"c", b"c"]));
        input.extend(b"PING\r\n");
        let out = run(&mut s, &mut f, &input);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "+OK\r\n$1\r\n1\r\n+OK\r\n*4\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n$1\r\n3\r\n:2\r\n:2\r\n+PONG\r\n"
        );
    }

    #[test]
    fn a_key_of_a_moved_slot_answers_moved_with_the_owners_address() {
        let (mut s, mut f) = (Session::new(Limits::default(), false), Fake::default());
        // Find keys on either side of the split.
        let key_in = |far: bool| {
            (0..)
                .map(|i| format!("far:{i}").into_bytes())
                .find(|k| (dinomo_control::slot_of(k).get() >= 8192) == far)
                .unwrap()
        };
        let (far, near) = (key_in(true), key_in(false));
        let slot = dinomo_control::slot_of(&far);
        let out = run(&mut s, &mut f, &cmd(&[b"GET", &far]));
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("-MOVED {slot} 10.0.0.2:7101\r\n")
        );
        // A multi-key command with one moved part is redirected whole; the rest is unchanged.
        let out = run(&mut s, &mut f, &cmd(&[b"MGET", &near, &far]));
        assert!(
            out.starts_with(b"-MOVED "),
            "{}",
            String::from_utf8_lossy(&out)
        );
        let out = run(&mut s, &mut f, &cmd(&[b"SET", &near, b"v"]));
        assert_eq!(out, b"+OK\r\n");
    }

    #[test]
    fn set_options_and_unsupported_ttl() {
        let (mut s, mut f) = (Session::new(Limits::default(), false), Fake::default());
        let out = run(&mut s, &mut f, &cmd(&[b"SET", b"k", b"v", b"NX"]));
        assert_eq!(out, b"+OK\r\n");
        let out = run(&mut s, &mut f, &cmd(&[b"SET", b"k", b"w", b"NX"]));
        assert_eq!(out, b"$-1\r\n");
        let out = run(&mut s, &mut f, &cmd(&[b"SET", b"k", b"w", b"XX", b"GET"]));
        assert_eq!(out, b"$1\r\nv\r\n");
        let out = run(&mut s, &mut f, &cmd(&[b"SET", b"k", b"w", b"EX", b"10"]));
        assert!(out.starts_with(b"-ERR expiration"));
        let out = run(&mut s, &mut f, &cmd(&[b"SET", b"k", b"w", b"NX", b"XX"]));
        assert_eq!(out, b"-ERR syntax error\r\n");
    }

    #[test]
    fn errors_for_unknown_commands_and_arity() {
        let (mut s, mut f) = (Session::new(Limits::default(), false), Fake::default());
        let out = run(&mut s, &mut f, &cmd(&[b"FOO", b"bar"]));
        assert_eq!(
            out,
            b"-ERR unknown command 'FOO', with args beginning with: 'bar' \r\n"
        );
        let out = run(&mut s, &mut f, &cmd(&[b"GET"]));
        assert_eq!(out, b"-ERR wrong number of arguments for 'get' command\r\n");
        let out = run(&mut s, &mut f, &cmd(&[b"MSET", b"a"]));
        assert_eq!(
            out,
            b"-ERR wrong number of arguments for 'mset' command\r\n"
        );
        assert!(!s.is_closing());
    }

    #[test]
    fn protocol_errors_close_the_connection() {
        let (mut s, mut f) = (Session::new(Limits::default(), false), Fake::default());
        let out = run(&mut s, &mut f, b"*1\r\n$x\r\n");
        assert_eq!(out, b"-ERR Protocol error: invalid bulk length\r\n");
        assert!(s.is_closing());
    }

    #[test]
    fn auth_gates_commands() {
        let mut f = Fake {
            password: Some(b"secret".to_vec()),
            ..Fake::default()
        };
        let mut s = Session::new(Limits::default(), true);
        let out = run(&mut s, &mut f, &cmd(&[b"GET", b"k"]));
        assert_eq!(out, b"-NOAUTH Authentication required.\r\n");
        let out = run(&mut s, &mut f, &cmd(&[b"AUTH", b"wrong"]));
        assert!(out.starts_with(b"-WRONGPASS"));
        let out = run(&mut s, &mut f, &cmd(&[b"AUTH", b"secret"]));
        assert_eq!(out, b"+OK\r\n");
        let out = run(&mut s, &mut f, &cmd(&[b"GET", b"k"]));
        assert_eq!(out, b"$-1\r\n");
        // Without a configured password AUTH is an error.
        let mut f = Fake::default();
        let mut s = Session::new(Limits::default(), false);
        let out = run(&mut s, &mut f, &cmd(&[b"AUTH", b"x"]));
        assert!(out.starts_with(b"-ERR AUTH <password> called without any password"));
    }

    #[test]
    fn hello_3_switches_to_resp3() {
        let (mut s, mut f) = (Session::new(Limits::default(), false), Fake::default());
        let out = run(&mut s, &mut f, &cmd(&[b"HELLO", b"3"]));
        assert!(
            out.starts_with(b"%7\r\n"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        let out = run(&mut s, &mut f, &cmd(&[b"GET", b"missing"]));
        assert_eq!(out, b"_\r\n");
        let out = run(&mut s, &mut f, &cmd(&[b"INFO"]));
        assert!(out.starts_with(b"="));
    }

    #[test]
    fn pipeline_limit_leaves_input_unparsed() {
        let mut s = Session::new(Limits::default(), false);
        // A dispatcher that never answers.
        struct Silent;
        impl Dispatch for Silent {
            fn submit(&mut self, _: u64, _: u32, _: Command) {}
            fn info(&mut self, _: &[Vec<u8>]) -> String {
                String::new()
            }
            fn cluster(&mut self, _: &[u8], _: &mut ReplyWriter<'_>) -> Option<()> {
                None
            }
            fn requirepass(&self) -> Option<&[u8]> {
                None
            }
            fn client_id(&self) -> u64 {
                0
            }
        }
        let mut input = Vec::new();
        for _ in 0..PIPELINE_MAX + 10 {
            input.extend(cmd(&[b"GET", b"k"]));
        }
        assert!(s.feed(&input));
        s.process(&mut Silent);
        assert_eq!(s.pending(), PIPELINE_MAX);
        assert!(!s.wants_input());
    }
}
