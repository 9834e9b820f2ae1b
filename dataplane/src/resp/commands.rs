//! The command table of a KN's Redis endpoint, the errors commands share, and `COMMAND`.
//!
//! Each [`CommandSpec`] carries what Redis 7 reports about the command: its lowercase name, its
//! arity (positive: exactly that many arguments, the name included; negative: at least the
//! absolute value), its flags and ACL categories in the order Redis lists them, the legacy key
//! range (first key, last key, step), the key specification clients use to route by slot, and
//! the tips cluster proxies read. These values are Redis's own for each command, so `redis-cli`
//! and cluster-aware clients treat dinomo's commands as they treat Redis's; only the one-line
//! documentation in [`CommandDocs`] is dinomo's. Adding a command is a new [`CommandId`]
//! variant and a row in [`COMMANDS`]; the tests check every row against the rules below.
//!
//! Invariants: [`COMMANDS`] is indexed by [`CommandId`] (row `i` has the id whose discriminant
//! is `i`), names are unique and lowercase ASCII, flags and categories are listed in Redis's
//! canonical order without repeats, and every command with keys has a key step of at least 1.
//! [`lookup`] compares names ASCII-case-insensitively without allocating.
//!
//! Error texts are Redis 7's, byte for byte; [`unknown_command_message`] documents how it
//! shortens long names and arguments.

use thiserror::Error;

use super::constants::ERROR_QUOTE_BYTES_MAX;
use super::parse::{Argv, parse_i64};
use super::reply::ReplyWriter;

/// Every command dinomo knows, in [`COMMANDS`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommandId {
    Get,
    Set,
    Del,
    Exists,
    Mget,
    Mset,
    Ping,
    Echo,
    Hello,
    Auth,
    Select,
    Command,
    Info,
    Cluster,
    Quit,
}

impl CommandId {
    /// The table row of this command.
    pub fn spec(self) -> &'static CommandSpec {
        // The table is indexed by id (checked by a test), so the fallback is never taken; it
        // keeps this function free of an indexing panic all the same.
        COMMANDS.get(self as usize).unwrap_or(&COMMANDS[0])
    }
}

/// A command flag as `COMMAND INFO` reports it. Variants are in Redis's output order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CommandFlag {
    Write,
    Readonly,
    Denyoom,
    Module,
    Admin,
    Pubsub,
    Noscript,
    Blocking,
    Loading,
    Stale,
    SkipMonitor,
    SkipSlowlog,
    Asking,
    Fast,
    NoAuth,
    NoMandatoryKeys,
    NoAsyncLoading,
    NoMulti,
    Movablekeys,
    AllowBusy,
}

impl CommandFlag {
    /// The name `COMMAND INFO` prints.
    pub fn name(self) -> &'static str {
        match self {
            Self::Write => "write",
            Self::Readonly => "readonly",
            Self::Denyoom => "denyoom",
            Self::Module => "module",
            Self::Admin => "admin",
            Self::Pubsub => "pubsub",
            Self::Noscript => "noscript",
            Self::Blocking => "blocking",
            Self::Loading => "loading",
            Self::Stale => "stale",
            Self::SkipMonitor => "skip_monitor",
            Self::SkipSlowlog => "skip_slowlog",
            Self::Asking => "asking",
            Self::Fast => "fast",
            Self::NoAuth => "no_auth",
            Self::NoMandatoryKeys => "no_mandatory_keys",
            Self::NoAsyncLoading => "no_async_loading",
            Self::NoMulti => "no_multi",
            Self::Movablekeys => "movablekeys",
            Self::AllowBusy => "allow_busy",
        }
    }
}

/// An ACL category as `COMMAND INFO` reports it. Variants are in Redis's output order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AclCategory {
    Keyspace,
    Read,
    Write,
    Set,
    Sortedset,
    List,
    Hash,
    String,
    Bitmap,
    Hyperloglog,
    Geo,
    Stream,
    Pubsub,
    Admin,
    Fast,
    Slow,
    Blocking,
    Dangerous,
    Connection,
    Transaction,
    Scripting,
}

impl AclCategory {
    /// Every category, in output order.
    pub const ALL: [Self; 21] = [
        Self::Keyspace,
        Self::Read,
        Self::Write,
        Self::Set,
        Self::Sortedset,
        Self::List,
        Self::Hash,
        Self::String,
        Self::Bitmap,
        Self::Hyperloglog,
        Self::Geo,
        Self::Stream,
        Self::Pubsub,
        Self::Admin,
        Self::Fast,
        Self::Slow,
        Self::Blocking,
        Self::Dangerous,
        Self::Connection,
        Self::Transaction,
        Self::Scripting,
    ];

    /// The name `COMMAND INFO` prints, with its `@`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Keyspace => "@keyspace",
            Self::Read => "@read",
            Self::Write => "@write",
            Self::Set => "@set",
            Self::Sortedset => "@sortedset",
            Self::List => "@list",
            Self::Hash => "@hash",
            Self::String => "@string",
            Self::Bitmap => "@bitmap",
            Self::Hyperloglog => "@hyperloglog",
            Self::Geo => "@geo",
            Self::Stream => "@stream",
            Self::Pubsub => "@pubsub",
            Self::Admin => "@admin",
            Self::Fast => "@fast",
            Self::Slow => "@slow",
            Self::Blocking => "@blocking",
            Self::Dangerous => "@dangerous",
            Self::Connection => "@connection",
            Self::Transaction => "@transaction",
            Self::Scripting => "@scripting",
        }
    }
}

/// How a command uses one of its keys, as a key specification reports it. Variants are in
/// Redis's output order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyFlag {
    Ro,
    Rw,
    Ow,
    Rm,
    Access,
    Update,
    Insert,
    Delete,
    NotKey,
    Incomplete,
    VariableFlags,
}

impl KeyFlag {
    /// The name `COMMAND INFO` prints.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ro => "RO",
            Self::Rw => "RW",
            Self::Ow => "OW",
            Self::Rm => "RM",
            Self::Access => "access",
            Self::Update => "update",
            Self::Insert => "insert",
            Self::Delete => "delete",
            Self::NotKey => "not_key",
            Self::Incomplete => "incomplete",
            Self::VariableFlags => "variable_flags",
        }
    }
}

/// A key specification of the simplest kind, the only one the table needs: keys start at a
/// fixed argument index and run over a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySpec {
    pub flags: &'static [KeyFlag],
    pub notes: Option<&'static str>,
    /// Index of the first key (`begin_search` of type `index`).
    pub begin_index: i32,
    /// Last key relative to the first: 0 for one key, -1 for "up to the last argument"
    /// (`find_keys` of type `range`).
    pub last_key: i32,
    /// Distance between keys.
    pub key_step: i32,
    /// With `last_key` -1, how much of the remaining arguments hold keys (0: all).
    pub limit: i32,
}

/// What `COMMAND DOCS` reports about a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandDocs {
    pub summary: &'static str,
    pub since: &'static str,
    pub group: &'static str,
    pub complexity: &'static str,
    /// Version since which the command is deprecated, if it is.
    pub deprecated_since: Option<&'static str>,
    /// What to use instead of a deprecated command.
    pub replaced_by: Option<&'static str>,
}

/// One row of the command table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    pub id: CommandId,
    /// Lowercase name, as `COMMAND` and the arity error print it.
    pub name: &'static str,
    /// Positive: exactly this many arguments (the name included); negative: at least `-arity`.
    pub arity: i32,
    pub flags: &'static [CommandFlag],
    /// The categories given explicitly; [`CommandSpec::acl_categories`] adds those implied by
    /// the flags, as Redis does.
    pub explicit_acl_categories: &'static [AclCategory],
    /// Legacy key range: index of the first key (0: no keys), of the last key (negative: from
    /// the end, -1 being the last argument), and the step between keys.
    pub first_key: i32,
    pub last_key: i32,
    pub key_step: i32,
    pub key_specs: &'static [KeySpec],
    /// Hints for cluster proxies (`request_policy:...`).
    pub tips: &'static [&'static str],
    pub docs: CommandDocs,
}

impl CommandSpec {
    /// Whether `argc` arguments (the name included) satisfy the arity.
    pub fn arity_accepts(&self, argc: usize) -> bool {
        let argc = i64::try_from(argc).unwrap_or(i64::MAX);
        let arity = i64::from(self.arity);
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }

    /// [`CommandSpec::arity_accepts`] as the error Redis replies with.
    pub fn check_arity(&self, argc: usize) -> Result<(), CommandError> {
        if self.arity_accepts(argc) {
            Ok(())
        } else {
            Err(CommandError::WrongArity(self.name))
        }
    }

    /// Whether the command has `flag`.
    pub fn has_flag(&self, flag: CommandFlag) -> bool {
        self.flags.contains(&flag)
    }

    /// The ACL categories `COMMAND INFO` reports, in order: the explicit ones plus those Redis
    /// implies from the flags (`write` → `@write`, `readonly` → `@read`, `admin` → `@admin` and
    /// `@dangerous`, `pubsub` → `@pubsub`, `fast` → `@fast`, `blocking` → `@blocking`, and
    /// `@slow` for every command that is not `@fast`).
    pub fn acl_categories(&self) -> impl Iterator<Item = AclCategory> + '_ {
        let implied = move |category: AclCategory| match category {
            AclCategory::Write => self.has_flag(CommandFlag::Write),
            AclCategory::Read => self.has_flag(CommandFlag::Readonly),
            AclCategory::Admin | AclCategory::Dangerous => self.has_flag(CommandFlag::Admin),
            AclCategory::Pubsub => self.has_flag(CommandFlag::Pubsub),
            AclCategory::Fast => self.has_flag(CommandFlag::Fast),
            AclCategory::Blocking => self.has_flag(CommandFlag::Blocking),
            AclCategory::Slow => {
                !self.has_flag(CommandFlag::Fast)
                    && !self.explicit_acl_categories.contains(&AclCategory::Fast)
            }
            _ => false,
        };
        AclCategory::ALL.into_iter().filter(move |&category| {
            self.explicit_acl_categories.contains(&category) || implied(category)
        })
    }

    /// The argument indices that hold keys in a request of `argc` arguments, by the legacy key
    /// range: from `first_key` to `last_key` (counted from the end when negative) in steps of
    /// `key_step`, stopping at the last argument. Empty for commands without keys.
    pub fn key_indices(&self, argc: usize) -> impl Iterator<Item = usize> + use<> {
        let argc = i64::try_from(argc).unwrap_or(i64::MAX);
        let first = i64::from(self.first_key);
        let last = if self.last_key < 0 {
            argc + i64::from(self.last_key)
        } else {
            i64::from(self.last_key)
        }
        .min(argc - 1);
        let step = usize::try_from(self.key_step).unwrap_or(1).max(1);
        let keys = match (usize::try_from(first), usize::try_from(last)) {
            (Ok(first), Ok(last)) if first > 0 && first <= last => {
                Some((first..=last).step_by(step))
            }
            _ => None,
        };
        keys.into_iter().flatten()
    }
}

const DOCS_NONE: CommandDocs = CommandDocs {
    summary: "",
    since: "",
    group: "",
    complexity: "",
    deprecated_since: None,
    replaced_by: None,
};

const ONE_KEY_READ: KeySpec = KeySpec {
    flags: &[KeyFlag::Ro, KeyFlag::Access],
    notes: None,
    begin_index: 1,
    last_key: 0,
    key_step: 1,
    limit: 0,
};

/// The command table, indexed by [`CommandId`].
pub static COMMANDS: [CommandSpec; 15] = {
    use AclCategory as C;
    use CommandFlag as F;
    const CONNECTION_HANDSHAKE: &[CommandFlag] = &[
        F::Noscript,
        F::Loading,
        F::Stale,
        F::Fast,
        F::NoAuth,
        F::AllowBusy,
    ];
    [
        CommandSpec {
            id: CommandId::Get,
            name: "get",
            arity: 2,
            flags: &[F::Readonly, F::Fast],
            explicit_acl_categories: &[C::String],
            first_key: 1,
            last_key: 1,
            key_step: 1,
            key_specs: &[ONE_KEY_READ],
            tips: &[],
            docs: CommandDocs {
                summary: "Returns the string value of a key.",
                since: "1.0.0",
                group: "string",
                complexity: "O(1)",
                ..DOCS_NONE
            },
        },
        CommandSpec {
            id: CommandId::Set,
            name: "set",
            arity: -3,
            flags: &[F::Write, F::Denyoom],
            explicit_acl_categories: &[C::String],
            first_key: 1,
            last_key: 1,
            key_step: 1,
            key_specs: &[KeySpec {
                flags: &[
                    KeyFlag::Rw,
                    KeyFlag::Access,
                    KeyFlag::Update,
                    KeyFlag::VariableFlags,
                ],
                notes: Some("RW and ACCESS due to the optional `GET` argument"),
                ..ONE_KEY_READ
            }],
            tips: &[],
            docs: CommandDocs {
                summary: "Sets the string value of a key, with an optional condition, \
                          expiration and the old value returned.",
                since: "1.0.0",
                group: "string",
                complexity: "O(1)",
                ..DOCS_NONE
            },
        },
        CommandSpec {
            id: CommandId::Del,
            name: "del",
            arity: -2,
            flags: &[F::Write],
            explicit_acl_categories: &[C::Keyspace],
            first_key: 1,
            last_key: -1,
            key_step: 1,
            key_specs: &[KeySpec {
                flags: &[KeyFlag::Rm, KeyFlag::Delete],
                last_key: -1,
                ..ONE_KEY_READ
            }],
            tips: &["request_policy:multi_shard", "response_policy:agg_sum"],
            docs: CommandDocs {
                summary: "Deletes keys and returns how many existed.",
                since: "1.0.0",
                group: "generic",
                complexity: "O(N) where N is the number of keys.",
                ..DOCS_NONE
            },
        },
        CommandSpec {
            id: CommandId::Exists,
            name: "exists",
            arity: -2,
            flags: &[F::Readonly, F::Fast],
            explicit_acl_categories: &[C::Keyspace],
            first_key: 1,
            last_key: -1,
            key_step: 1,
            key_specs: &[KeySpec {
                flags: &[KeyFlag::Ro],
                last_key: -1,
                ..ONE_KEY_READ
            }],
            tips: &["request_policy:multi_shard", "response_policy:agg_sum"],
            docs: CommandDocs {
                summary: "Counts how many of the given keys exist.",
                since: "1.0.0",
                group: "generic",
                complexity: "O(N) where N is the number of keys.",
                ..DOCS_NONE
            },
        },
        CommandSpec {
            id: CommandId::Mget,
            name: "mget",
            arity: -2,
            flags: &[F::Readonly, F::Fast],
            explicit_acl_categories: &[C::String],
            first_key: 1,
            last_key: -1,
            key_step: 1,
            key_specs: &[KeySpec {
                last_key: -1,
                ..ONE_KEY_READ
            }],
            tips: &["request_policy:multi_shard"],
            docs: CommandDocs {
                summary: "Returns the string values of several keys.",
                since: "1.0.0",
                group: "string",
                complexity: "O(N) where N is the number of keys.",
                ..DOCS_NONE
            },
        },
        CommandSpec {
            id: CommandId::Mset,
            name: "mset",
            arity: -3,
            flags: &[F::Write, F::Denyoom],
            explicit_acl_categories: &[C::String],
            first_key: 1,
            last_key: -1,
            key_step: 2,
            key_specs: &[KeySpec {
                flags: &[KeyFlag::Ow, KeyFlag::Update],
                last_key: -1,
                key_step: 2,
                ..ONE_KEY_READ
            }],
            tips: &[
                "request_policy:multi_shard",
                "response_policy:all_succeeded",
            ],
            docs: CommandDocs {
                summary: "Sets the string values of several keys.",
                since: "1.0.1",
                group: "string",
                complexity: "O(N) where N is the number of keys.",
                ..DOCS_NONE
            },
        },
        CommandSpec {
            id: CommandId::Ping,
            name: "ping",
            arity: -1,
            flags: &[F::Fast],
            explicit_acl_categories: &[C::Connection],
            first_key: 0,
            last_key: 0,
            key_step: 0,
            key_specs: &[],
            tips: &["request_policy:all_shards", "response_policy:all_succeeded"],
            docs: CommandDocs {
                summary: "Answers PONG, or echoes its argument.",
                since: "1.0.0",
                group: "connection",
                complexity: "O(1)",
                ..DOCS_NONE
            },
        },
        CommandSpec {
            id: CommandId::Echo,
            name: "echo",
            arity: 2,
            flags: &[F::Loading, F::Stale, F::Fast],
            explicit_acl_categories: &[C::Connection],
            first_key: 0,
            last_key: 0,
            key_step: 0,
            key_specs: &[],
            tips: &[],
            docs: CommandDocs {
                summary: "Returns its argument.",
                since: "1.0.0",
                group: "connection",
                complexity: "O(1)",
                ..DOCS_NONE
            },
        },
        CommandSpec {
            id: CommandId::Hello,
            name: "hello",
            arity: -1,
            flags: CONNECTION_HANDSHAKE,
            explicit_acl_categories: &[C::Connection],
            first_key: 0,
            last_key: 0,
            key_step: 0,
            key_specs: &[],
            tips: &[],
            docs: CommandDocs {
                summary: "Chooses the protocol version, optionally authenticates, and \
                          describes the server.",
                since: "6.0.0",
                group: "connection",
                complexity: "O(1)",
                ..DOCS_NONE
            },
        },
        CommandSpec {
            id: CommandId::Auth,
            name: "auth",
            arity: -2,
            flags: CONNECTION_HANDSHAKE,
            explicit_acl_categories: &[C::Connection],
            first_key: 0,
            last_key: 0,
            key_step: 0,
            key_specs: &[],
            tips: &[],
            docs: CommandDocs {
                summary: "Authenticates the connection.",
                since: "1.0.0",
                group: "connection",
                complexity: "O(1)",
                ..DOCS_NONE
            },
        },
        CommandSpec {
            id: CommandId::Select,
            name: "select",
            arity: 2,
            flags: &[F::Loading, F::Stale, F::Fast],
            explicit_acl_categories: &[C::Connection],
            first_key: 0,
            last_key: 0,
            key_step: 0,
            key_specs: &[],
            tips: &[],
            docs: CommandDocs {
                summary: "Selects the database; only database 0 exists.",
                since: "1.0.0",
                group: "connection",
                complexity: "O(1)",
                ..DOCS_NONE
            },
        },
        CommandSpec {
            id: CommandId::Command,
            name: "command",
            arity: -1,
            flags: &[F::Loading, F::Stale],
            explicit_acl_categories: &[C::Connection],
            first_key: 0,
            last_key: 0,
            key_step: 0,
            key_specs: &[],
            tips: &["nondeterministic_output_order"],
            docs: CommandDocs {
                summary: "Describes the commands the server knows.",
                since: "2.8.13",
                group: "server",
                complexity: "O(N) where N is the number of commands.",
                ..DOCS_NONE
            },
        },
        CommandSpec {
            id: CommandId::Info,
            name: "info",
            arity: -1,
            flags: &[F::Loading, F::Stale],
            explicit_acl_categories: &[C::Dangerous],
            first_key: 0,
            last_key: 0,
            key_step: 0,
            key_specs: &[],
            tips: &[
                "nondeterministic_output",
                "request_policy:all_shards",
                "response_policy:special",
            ],
            docs: CommandDocs {
                summary: "Reports information and statistics about the server.",
                since: "1.0.0",
                group: "server",
                complexity: "O(1)",
                ..DOCS_NONE
            },
        },
        CommandSpec {
            id: CommandId::Cluster,
            name: "cluster",
            arity: -2,
            flags: &[],
            explicit_acl_categories: &[],
            first_key: 0,
            last_key: 0,
            key_step: 0,
            key_specs: &[],
            tips: &[],
            docs: CommandDocs {
                summary: "Reports the cluster's slots, shards and nodes.",
                since: "3.0.0",
                group: "cluster",
                complexity: "Depends on subcommand.",
                ..DOCS_NONE
            },
        },
        CommandSpec {
            id: CommandId::Quit,
            name: "quit",
            arity: -1,
            flags: CONNECTION_HANDSHAKE,
            explicit_acl_categories: &[C::Connection],
            first_key: 0,
            last_key: 0,
            key_step: 0,
            key_specs: &[],
            tips: &[],
            docs: CommandDocs {
                summary: "Closes the connection.",
                since: "1.0.0",
                group: "connection",
                complexity: "O(1)",
                deprecated_since: Some("7.2.0"),
                replaced_by: Some("just closing the connection"),
            },
        },
    ]
};

/// The table row for `name`, compared ASCII-case-insensitively, without allocating.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    // A linear scan: with a few dozen rows the length check rejects almost every row in one
    // comparison, which beats hashing the name.
    COMMANDS
        .iter()
        .find(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
}

/// Errors commands reply with. `Display` gives Redis's exact text, code first.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(&'static str),
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpireTime(&'static str),
    #[error("ERR Protocol version is not an integer or out of range")]
    ProtocolVersionNotInteger,
    #[error("NOPROTO unsupported protocol version")]
    UnsupportedProtocol,
    /// `HELLO` with an option it does not know; holds the option as the client wrote it, cut to
    /// [`ERROR_QUOTE_BYTES_MAX`] bytes (Redis does not cut it).
    #[error("ERR Syntax error in HELLO option '{0}'")]
    HelloSyntax(String),
    #[error("ERR Client names cannot contain spaces, newlines or special characters.")]
    InvalidClientName,
    #[error("NOAUTH Authentication required.")]
    NoAuth,
    #[error(
        "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
         HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
         select the RESP protocol version at the same time"
    )]
    HelloNoAuth,
    #[error("WRONGPASS invalid username-password pair or user is disabled.")]
    WrongPass,
    #[error(
        "ERR AUTH <password> called without any password configured for the default user. \
         Are you sure your configuration is correct?"
    )]
    AuthWithoutPassword,
    #[error("ERR DB index is out of range")]
    DbIndexOutOfRange,
    #[error("ERR SELECT is not allowed in cluster mode")]
    SelectInClusterMode,
}

/// Parses an integer argument as Redis does (see [`parse_i64`]), with Redis's error.
pub fn parse_i64_arg(arg: &[u8]) -> Result<i64, CommandError> {
    parse_i64(arg).ok_or(CommandError::NotInteger)
}

/// The longest prefix of `bytes` that Redis's `%.*s` with precision `max` prints: it stops at
/// a NUL byte, as the C string it reads does, and after `max` bytes.
fn c_string_prefix(bytes: &[u8], max: usize) -> &[u8] {
    let until_nul = bytes
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(bytes.len());
    bytes.get(..until_nul.min(max)).unwrap_or_default()
}

/// Replaces CR and LF with spaces, as Redis does before it sends a message built from a
/// client's bytes.
fn blank_line_breaks(message: &mut [u8]) {
    for byte in message {
        if matches!(*byte, b'\r' | b'\n') {
            *byte = b' ';
        }
    }
}

/// The text of Redis 7's unknown-command error for `argv` (the name first), for
/// [`ReplyWriter::error`]:
/// `ERR unknown command 'foo', with args beginning with: 'a' 'b' `.
///
/// The name is cut to its first 128 bytes. The arguments are quoted one after the other, each
/// followed by a space, while the quoted part is shorter than 128 bytes; each argument is cut to
/// the bytes left of that budget (128 minus what is already written), so the quoted part ends at
/// most 3 bytes past 128. Like Redis's C formatting, a name or argument ends at its first NUL
/// byte. CR and LF become spaces. Without arguments the text ends in `with: `.
pub fn unknown_command_message<'a>(argv: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut argv = argv.into_iter();
    let name = argv.next().unwrap_or_default();
    let mut message = b"ERR unknown command '".to_vec();
    message.extend_from_slice(c_string_prefix(name, ERROR_QUOTE_BYTES_MAX));
    message.extend_from_slice(b"', with args beginning with: ");
    let args_start = message.len();
    for arg in argv {
        let quoted_len = message.len() - args_start;
        if quoted_len >= ERROR_QUOTE_BYTES_MAX {
            break;
        }
        message.push(b'\'');
        message.extend_from_slice(c_string_prefix(arg, ERROR_QUOTE_BYTES_MAX - quoted_len));
        message.extend_from_slice(b"' ");
    }
    blank_line_breaks(&mut message);
    message
}

/// The text of Redis 7's unknown-subcommand error, for [`ReplyWriter::error`]:
/// `ERR unknown subcommand 'foo'. Try CLUSTER HELP.`, with the subcommand cut as
/// [`unknown_command_message`] cuts a name and the command as the client wrote it, uppercased.
pub fn unknown_subcommand_message(command: &[u8], subcommand: &[u8]) -> Vec<u8> {
    let mut message = b"ERR unknown subcommand '".to_vec();
    message.extend_from_slice(c_string_prefix(subcommand, ERROR_QUOTE_BYTES_MAX));
    message.extend_from_slice(b"'. Try ");
    message.extend(
        c_string_prefix(command, ERROR_QUOTE_BYTES_MAX)
            .iter()
            .map(u8::to_ascii_uppercase),
    );
    message.extend_from_slice(b" HELP.");
    blank_line_breaks(&mut message);
    message
}

/// Writes the 10-element `COMMAND INFO` reply for `spec`: name, arity, flags, first key, last
/// key, step, ACL categories, tips, key specifications, subcommands (none are listed; the
/// subcommands of `COMMAND` and `CLUSTER` are answered but not described).
pub fn write_command_info(w: &mut ReplyWriter<'_>, spec: &CommandSpec) {
    w.array_header(10);
    w.bulk(spec.name.as_bytes());
    w.integer(i64::from(spec.arity));
    w.set_header(spec.flags.len());
    for flag in spec.flags {
        w.simple(flag.name().as_bytes());
    }
    w.integer(i64::from(spec.first_key));
    w.integer(i64::from(spec.last_key));
    w.integer(i64::from(spec.key_step));
    w.set_header(spec.acl_categories().count());
    for category in spec.acl_categories() {
        w.simple(category.name().as_bytes());
    }
    w.set_header(spec.tips.len());
    for tip in spec.tips {
        w.bulk(tip.as_bytes());
    }
    w.set_header(spec.key_specs.len());
    for key_spec in spec.key_specs {
        write_key_spec(w, key_spec);
    }
    w.set_header(0);
}

fn write_key_spec(w: &mut ReplyWriter<'_>, key_spec: &KeySpec) {
    w.map_header(3 + usize::from(key_spec.notes.is_some()));
    if let Some(notes) = key_spec.notes {
        w.bulk(b"notes");
        w.bulk(notes.as_bytes());
    }
    w.bulk(b"flags");
    w.set_header(key_spec.flags.len());
    for flag in key_spec.flags {
        w.simple(flag.name().as_bytes());
    }
    w.bulk(b"begin_search");
    w.map_header(2);
    w.bulk(b"type");
    w.bulk(b"index");
    w.bulk(b"spec");
    w.map_header(1);
    w.bulk(b"index");
    w.integer(i64::from(key_spec.begin_index));
    w.bulk(b"find_keys");
    w.map_header(2);
    w.bulk(b"type");
    w.bulk(b"range");
    w.bulk(b"spec");
    w.map_header(3);
    w.bulk(b"lastkey");
    w.integer(i64::from(key_spec.last_key));
    w.bulk(b"keystep");
    w.integer(i64::from(key_spec.key_step));
    w.bulk(b"limit");
    w.integer(i64::from(key_spec.limit));
}

/// Writes the `COMMAND DOCS` map for `spec`: summary, since, group, complexity, and for a
/// deprecated command its doc flags, deprecation version and replacement. Arguments are not
/// described, so `redis-cli` shows no argument hints for dinomo's commands.
pub fn write_command_docs(w: &mut ReplyWriter<'_>, spec: &CommandSpec) {
    let docs = &spec.docs;
    let pairs = 4 + docs
        .deprecated_since
        .map_or(0, |_| 2 + usize::from(docs.replaced_by.is_some()));
    w.map_header(pairs);
    for (key, value) in [
        ("summary", docs.summary),
        ("since", docs.since),
        ("group", docs.group),
        ("complexity", docs.complexity),
    ] {
        w.bulk(key.as_bytes());
        w.bulk(value.as_bytes());
    }
    if let Some(since) = docs.deprecated_since {
        w.bulk(b"doc_flags");
        w.set_header(1);
        w.simple(b"deprecated");
        w.bulk(b"deprecated_since");
        w.bulk(since.as_bytes());
        if let Some(replacement) = docs.replaced_by {
            w.bulk(b"replaced_by");
            w.bulk(replacement.as_bytes());
        }
    }
}

/// The help lines of `COMMAND HELP`, between Redis's header and footer lines.
const COMMAND_HELP: &[&str] = &[
    "(no subcommand)",
    "    Return details about all commands.",
    "COUNT",
    "    Return the total number of commands in this server.",
    "LIST",
    "    Return a list of all commands in this server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple commands.",
    "    If no command names are given, details for all commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple commands.",
    "    If no command names are given, documentation for all commands is returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full command.",
    "GETKEYSANDFLAGS <full-command>",
    "    Return the keys and the access flags from a full command.",
];

/// Answers a `COMMAND` request (`argv[0]` is `COMMAND` in any case) from the table alone:
/// no subcommand (every command's info), `COUNT`, `LIST`, `INFO [name ...]` (a null for an
/// unknown name), `DOCS [name ...]` (unknown names left out), `GETKEYS` and `GETKEYSANDFLAGS`
/// (by the legacy key range), and `HELP`, with Redis's arity and unknown-subcommand errors.
/// `LIST FILTERBY ...` is not supported and answers `ERR syntax error`.
pub fn reply_command(argv: &Argv<'_>, w: &mut ReplyWriter<'_>) {
    let Some(subcommand) = argv.get(1) else {
        w.array_header(COMMANDS.len());
        for spec in &COMMANDS {
            write_command_info(w, spec);
        }
        return;
    };
    let subcommands: [(&str, i32, &'static str); 7] = [
        ("count", 2, "command|count"),
        ("list", -2, "command|list"),
        ("info", -2, "command|info"),
        ("docs", -2, "command|docs"),
        ("getkeys", -3, "command|getkeys"),
        ("getkeysandflags", -3, "command|getkeysandflags"),
        ("help", 2, "command|help"),
    ];
    let Some(&(name, arity, full_name)) = subcommands
        .iter()
        .find(|(name, _, _)| name.as_bytes().eq_ignore_ascii_case(subcommand))
    else {
        w.error(&unknown_subcommand_message(argv.command_name(), subcommand));
        return;
    };
    let argc = argv.len();
    let arity_ok = if arity > 0 {
        argc == arity.unsigned_abs() as usize
    } else {
        argc >= arity.unsigned_abs() as usize
    };
    if !arity_ok {
        w.error_display(&CommandError::WrongArity(full_name));
        return;
    }
    let names = argv.iter().skip(2);
    match name {
        "count" => w.integer(COMMANDS.len() as i64),
        "list" => {
            if argc > 2 {
                w.error_display(&CommandError::Syntax);
                return;
            }
            w.array_header(COMMANDS.len());
            for spec in &COMMANDS {
                w.bulk(spec.name.as_bytes());
            }
        }
        "info" => {
            if argc == 2 {
                w.array_header(COMMANDS.len());
                for spec in &COMMANDS {
                    write_command_info(w, spec);
                }
            } else {
                w.array_header(argc - 2);
                for name in names {
                    match lookup(name) {
                        Some(spec) => write_command_info(w, spec),
                        None => w.null(),
                    }
                }
            }
        }
        "docs" => {
            let found = names.clone().filter_map(lookup).count();
            let all = argc == 2;
            w.map_header(if all { COMMANDS.len() } else { found });
            let mut write = |spec: &CommandSpec| {
                w.bulk(spec.name.as_bytes());
                write_command_docs(w, spec);
            };
            if all {
                COMMANDS.iter().for_each(&mut write);
            } else {
                names.filter_map(lookup).for_each(write);
            }
        }
        "getkeys" | "getkeysandflags" => {
            write_command_keys(argv, name == "getkeysandflags", w);
        }
        _ => {
            w.array_header(COMMAND_HELP.len() + 3);
            w.simple(b"COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:");
            for line in COMMAND_HELP {
                w.simple(line.as_bytes());
            }
            w.simple(b"HELP");
            w.simple(b"    Print this help.");
        }
    }
}

/// `COMMAND GETKEYS` / `GETKEYSANDFLAGS`: the keys of the command in `argv[2..]`.
fn write_command_keys(argv: &Argv<'_>, with_flags: bool, w: &mut ReplyWriter<'_>) {
    let target_argc = argv.len().saturating_sub(2);
    let Some(spec) = argv.get(2).and_then(lookup) else {
        w.error(b"ERR Invalid command specified");
        return;
    };
    if spec.first_key == 0 {
        w.error(b"ERR The command has no key arguments");
        return;
    }
    if !spec.arity_accepts(target_argc) {
        w.error(b"ERR Invalid number of arguments specified for command");
        return;
    }
    let key_flags = spec
        .key_specs
        .first()
        .map_or(&[][..], |key_spec| key_spec.flags);
    w.array_header(spec.key_indices(target_argc).count());
    for index in spec.key_indices(target_argc) {
        let key = argv.get(index + 2).unwrap_or_default();
        if with_flags {
            w.array_header(2);
            w.bulk(key);
            w.set_header(key_flags.len());
            for flag in key_flags {
                w.simple(flag.name().as_bytes());
            }
        } else {
            w.bulk(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::Request;
    use super::super::reply::Protocol;
    use super::*;

    /// Skips one complete RESP value at the start of `bytes` and returns its length, or `None`
    /// if it is not one well-formed value: a check that replies are framed correctly.
    fn value_len(bytes: &[u8]) -> Option<usize> {
        let line_end = bytes.windows(2).position(|pair| pair == b"\r\n")?;
        let line = std::str::from_utf8(bytes.get(1..line_end)?).ok()?;
        let after_line = line_end + 2;
        match bytes.first()? {
            b'+' | b'-' | b':' | b',' | b'#' | b'_' => Some(after_line),
            b'$' | b'=' => {
                let len: i64 = line.parse().ok()?;
                if len < 0 {
                    return Some(after_line);
                }
                let end = after_line + usize::try_from(len).ok()?;
                (bytes.get(end..end + 2)? == b"\r\n").then_some(end + 2)
            }
            kind @ (b'*' | b'%' | b'~' | b'>') => {
                let len: i64 = line.parse().ok()?;
                let elements =
                    usize::try_from(len).unwrap_or(0) * if *kind == b'%' { 2 } else { 1 };
                let mut at = after_line;
                for _ in 0..elements {
                    at += value_len(bytes.get(at..)?)?;
                }
                Some(at)
            }
            _ => None,
        }
    }

    fn reply(args: &[&str], protocol: Protocol) -> Vec<u8> {
        let request = Request::from_args(args);
        let mut out = Vec::new();
        reply_command(
            &request.argv(&[]),
            &mut ReplyWriter::new(&mut out, protocol),
        );
        out
    }

    fn assert_one_value(bytes: &[u8]) {
        assert_eq!(
            value_len(bytes),
            Some(bytes.len()),
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }

    #[test]
    fn table_is_indexed_by_id_and_consistent() {
        let mut names = std::collections::HashSet::new();
        for (index, spec) in COMMANDS.iter().enumerate() {
            assert_eq!(spec.id as usize, index, "{}", spec.name);
            assert_eq!(spec.id.spec().name, spec.name);
            assert!(names.insert(spec.name), "duplicate {}", spec.name);
            assert!(
                spec.name.bytes().all(|byte| byte.is_ascii_lowercase()),
                "{}",
                spec.name
            );
            assert!(spec.arity != 0, "{}", spec.name);
            assert!(
                spec.flags.windows(2).all(|pair| pair[0] < pair[1]),
                "{}",
                spec.name
            );
            assert!(
                spec.explicit_acl_categories
                    .windows(2)
                    .all(|pair| pair[0] < pair[1]),
                "{}",
                spec.name
            );
            // The legacy range and the key specification describe the same keys.
            match spec.key_specs {
                [] => assert_eq!((spec.first_key, spec.last_key, spec.key_step), (0, 0, 0)),
                [key_spec] => {
                    assert!(spec.key_step >= 1);
                    assert_eq!(key_spec.begin_index, spec.first_key);
                    assert_eq!(key_spec.key_step, spec.key_step);
                    let legacy_last = if key_spec.last_key >= 0 {
                        key_spec.begin_index + key_spec.last_key
                    } else {
                        key_spec.last_key
                    };
                    assert_eq!(legacy_last, spec.last_key, "{}", spec.name);
                    assert!(key_spec.flags.windows(2).all(|pair| pair[0] < pair[1]));
                }
                _ => panic!("{} has several key specs", spec.name),
            }
        }
    }

    #[test]
    fn lookup_ignores_case_and_rejects_strangers() {
        for spec in &COMMANDS {
            assert_eq!(lookup(spec.name.as_bytes()).map(|s| s.id), Some(spec.id));
            let upper = spec.name.to_ascii_uppercase();
            assert_eq!(lookup(upper.as_bytes()).map(|s| s.id), Some(spec.id));
        }
        assert_eq!(lookup(b"GeT").map(|s| s.id), Some(CommandId::Get));
        for stranger in [
            &b""[..],
            b"ge",
            b"gett",
            b"get ",
            b"g\0t",
            b"\xc7et",
            b"flushall",
        ] {
            assert!(lookup(stranger).is_none(), "{stranger:?}");
        }
    }

    #[test]
    fn arity_of_every_command() {
        // For each command, the argument counts (name included) from 0 to 6 it accepts.
        let expected: [(CommandId, [bool; 7]); 15] = [
            (
                CommandId::Get,
                [false, false, true, false, false, false, false],
            ),
            (
                CommandId::Set,
                [false, false, false, true, true, true, true],
            ),
            (CommandId::Del, [false, false, true, true, true, true, true]),
            (
                CommandId::Exists,
                [false, false, true, true, true, true, true],
            ),
            (
                CommandId::Mget,
                [false, false, true, true, true, true, true],
            ),
            (
                CommandId::Mset,
                [false, false, false, true, true, true, true],
            ),
            (CommandId::Ping, [false, true, true, true, true, true, true]),
            (
                CommandId::Echo,
                [false, false, true, false, false, false, false],
            ),
            (
                CommandId::Hello,
                [false, true, true, true, true, true, true],
            ),
            (
                CommandId::Auth,
                [false, false, true, true, true, true, true],
            ),
            (
                CommandId::Select,
                [false, false, true, false, false, false, false],
            ),
            (
                CommandId::Command,
                [false, true, true, true, true, true, true],
            ),
            (CommandId::Info, [false, true, true, true, true, true, true]),
            (
                CommandId::Cluster,
                [false, false, true, true, true, true, true],
            ),
            (CommandId::Quit, [false, true, true, true, true, true, true]),
        ];
        for (id, accepts) in expected {
            let spec = id.spec();
            for (argc, &ok) in accepts.iter().enumerate() {
                assert_eq!(spec.arity_accepts(argc), ok, "{} with {argc}", spec.name);
                let expected_error = (!ok)
                    .then(|| format!("ERR wrong number of arguments for '{}' command", spec.name));
                assert_eq!(
                    spec.check_arity(argc).err().map(|error| error.to_string()),
                    expected_error
                );
            }
        }
        assert!(lookup(b"mget").is_some_and(|spec| spec.arity_accepts(usize::MAX)));
    }

    #[test]
    fn acl_categories_follow_redis() {
        let categories = |id: CommandId| -> Vec<&str> {
            id.spec().acl_categories().map(AclCategory::name).collect()
        };
        assert_eq!(categories(CommandId::Get), ["@read", "@string", "@fast"]);
        assert_eq!(categories(CommandId::Set), ["@write", "@string", "@slow"]);
        assert_eq!(categories(CommandId::Del), ["@keyspace", "@write", "@slow"]);
        assert_eq!(
            categories(CommandId::Exists),
            ["@keyspace", "@read", "@fast"]
        );
        assert_eq!(categories(CommandId::Ping), ["@fast", "@connection"]);
        assert_eq!(categories(CommandId::Command), ["@slow", "@connection"]);
        assert_eq!(categories(CommandId::Info), ["@slow", "@dangerous"]);
        assert_eq!(categories(CommandId::Cluster), ["@slow"]);
    }

    #[test]
    fn key_indices_follow_the_legacy_range() {
        let keys =
            |id: CommandId, argc: usize| -> Vec<usize> { id.spec().key_indices(argc).collect() };
        assert_eq!(keys(CommandId::Get, 2), [1]);
        assert_eq!(keys(CommandId::Set, 5), [1]);
        assert_eq!(keys(CommandId::Del, 4), [1, 2, 3]);
        assert_eq!(keys(CommandId::Mset, 5), [1, 3]);
        assert_eq!(keys(CommandId::Mset, 4), [1, 3]);
        assert_eq!(keys(CommandId::Mget, 1), Vec::<usize>::new());
        assert_eq!(keys(CommandId::Get, 1), Vec::<usize>::new());
        assert_eq!(keys(CommandId::Ping, 3), Vec::<usize>::new());
        assert_eq!(keys(CommandId::Del, 0), Vec::<usize>::new());
    }

    #[test]
    fn unknown_command_texts() {
        let text = |argv: &[&[u8]]| {
            String::from_utf8(unknown_command_message(argv.iter().copied())).unwrap()
        };
        assert_eq!(
            text(&[b"foo", b"a", b"b"]),
            "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
        );
        assert_eq!(
            text(&[b"foo"]),
            "ERR unknown command 'foo', with args beginning with: "
        );
        assert_eq!(
            text(&[]),
            "ERR unknown command '', with args beginning with: "
        );
        assert_eq!(
            text(&[b"x\r\ny", b"a\nb"]),
            "ERR unknown command 'x  y', with args beginning with: 'a b' "
        );
        assert_eq!(
            text(&[b"f\0oo", b"a\0b"]),
            "ERR unknown command 'f', with args beginning with: 'a' "
        );
        // Names are cut at 128 bytes.
        let long_name = vec![b'n'; 200];
        let message = text(&[&long_name]);
        assert_eq!(
            message,
            format!(
                "ERR unknown command '{}', with args beginning with: ",
                "n".repeat(128)
            )
        );
        // Arguments share a 128-byte budget: the first takes 100 + 3, the second gets the 25
        // bytes left, and a third is not quoted at all.
        let first = vec![b'a'; 100];
        let second = vec![b'b'; 50];
        let message = text(&[b"foo", &first, &second, b"c"]);
        assert_eq!(
            message,
            format!(
                "ERR unknown command 'foo', with args beginning with: '{}' '{}' ",
                "a".repeat(100),
                "b".repeat(25)
            )
        );
        // An argument that fills the budget exactly ends the list.
        let exact = vec![b'a'; 125];
        let message = text(&[b"foo", &exact, b"b"]);
        assert!(message.ends_with(&format!("'{}' ", "a".repeat(125))));
        let more = vec![b'a'; 124];
        let message = text(&[b"foo", &more, b"bcd"]);
        assert!(message.ends_with(&format!("'{}' 'b' ", "a".repeat(124))));
    }

    #[test]
    fn unknown_subcommand_text() {
        assert_eq!(
            unknown_subcommand_message(b"cluster", b"foo"),
            b"ERR unknown subcommand 'foo'. Try CLUSTER HELP."
        );
        assert_eq!(
            reply(&["command", "nope"], Protocol::Resp2),
            b"-ERR unknown subcommand 'nope'. Try COMMAND HELP.\r\n"
        );
    }

    #[test]
    fn command_errors_have_redis_texts() {
        for (error, text) in [
            (CommandError::Syntax, "ERR syntax error"),
            (
                CommandError::NotInteger,
                "ERR value is not an integer or out of range",
            ),
            (
                CommandError::InvalidExpireTime("set"),
                "ERR invalid expire time in 'set' command",
            ),
            (
                CommandError::WrongArity("get"),
                "ERR wrong number of arguments for 'get' command",
            ),
            (CommandError::NoAuth, "NOAUTH Authentication required."),
            (
                CommandError::UnsupportedProtocol,
                "NOPROTO unsupported protocol version",
            ),
        ] {
            assert_eq!(error.to_string(), text);
        }
        assert_eq!(parse_i64_arg(b"12"), Ok(12));
        assert_eq!(parse_i64_arg(b"012"), Err(CommandError::NotInteger));
    }

    #[test]
    fn command_info_for_get_byte_for_byte() {
        let expected2 = "*1\r\n*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n\
            *3\r\n+@read\r\n+@string\r\n+@fast\r\n*0\r\n\
            *1\r\n*6\r\n$5\r\nflags\r\n*2\r\n+RO\r\n+access\r\n\
            $12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n\
            $9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n\
            *6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n\
            *0\r\n";
        assert_eq!(
            String::from_utf8(reply(&["COMMAND", "INFO", "get"], Protocol::Resp2)).unwrap(),
            expected2
        );
        let expected3 = "*1\r\n*10\r\n$3\r\nget\r\n:2\r\n~2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n\
            ~3\r\n+@read\r\n+@string\r\n+@fast\r\n~0\r\n\
            ~1\r\n%3\r\n$5\r\nflags\r\n~2\r\n+RO\r\n+access\r\n\
            $12\r\nbegin_search\r\n%2\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n%1\r\n$5\r\nindex\r\n:1\r\n\
            $9\r\nfind_keys\r\n%2\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n\
            %3\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n\
            ~0\r\n";
        assert_eq!(
            String::from_utf8(reply(&["command", "info", "GET"], Protocol::Resp3)).unwrap(),
            expected3
        );
    }

    #[test]
    fn command_subcommands_answer_like_redis() {
        assert_eq!(reply(&["COMMAND", "COUNT"], Protocol::Resp2), b":15\r\n");
        assert_eq!(
            reply(&["COMMAND", "COUNT", "x"], Protocol::Resp2),
            b"-ERR wrong number of arguments for 'command|count' command\r\n"
        );
        assert_eq!(
            reply(&["COMMAND", "GETKEYS"], Protocol::Resp2),
            b"-ERR wrong number of arguments for 'command|getkeys' command\r\n"
        );
        assert_eq!(
            reply(&["COMMAND", "INFO", "nope", "ping"], Protocol::Resp3)
                .get(..9)
                .unwrap(),
            b"*2\r\n_\r\n*1"
        );
        assert_eq!(
            reply(
                &["COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"],
                Protocol::Resp2
            ),
            b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        assert_eq!(
            reply(&["COMMAND", "GETKEYSANDFLAGS", "get", "k"], Protocol::Resp3),
            b"*1\r\n*2\r\n$1\r\nk\r\n~2\r\n+RO\r\n+access\r\n"
        );
        assert_eq!(
            reply(&["COMMAND", "GETKEYS", "nope", "a"], Protocol::Resp2),
            b"-ERR Invalid command specified\r\n"
        );
        assert_eq!(
            reply(&["COMMAND", "GETKEYS", "ping", "a"], Protocol::Resp2),
            b"-ERR The command has no key arguments\r\n"
        );
        assert_eq!(
            reply(&["COMMAND", "GETKEYS", "get", "a", "b"], Protocol::Resp2),
            b"-ERR Invalid number of arguments specified for command\r\n"
        );
        assert_eq!(
            reply(&["COMMAND", "DOCS", "nope"], Protocol::Resp3),
            b"%0\r\n"
        );
        assert_eq!(
            reply(&["COMMAND", "LIST", "FILTERBY", "x"], Protocol::Resp2),
            b"-ERR syntax error\r\n"
        );
        let list = reply(&["COMMAND", "LIST"], Protocol::Resp2);
        assert!(list.starts_with(b"*15\r\n$3\r\nget\r\n"));
    }

    #[test]
    fn every_command_reply_is_one_well_formed_value() {
        for protocol in [Protocol::Resp2, Protocol::Resp3] {
            for args in [
                &["COMMAND"][..],
                &["COMMAND", "INFO"],
                &["COMMAND", "INFO", "set", "nope", "mset"],
                &["COMMAND", "DOCS"],
                &["COMMAND", "DOCS", "quit", "get", "nope"],
                &["COMMAND", "LIST"],
                &["COMMAND", "HELP"],
                &["COMMAND", "GETKEYS", "del", "a", "b"],
                &["COMMAND", "GETKEYSANDFLAGS", "set", "k", "v"],
            ] {
                assert_one_value(&reply(args, protocol));
            }
        }
    }

    #[test]
    fn command_docs_shape() {
        // RESP3 keeps maps, which is what redis-cli reads; each command maps to its docs.
        let docs = reply(&["COMMAND", "DOCS", "quit"], Protocol::Resp3);
        let text = String::from_utf8(docs).unwrap();
        assert!(text.starts_with("%1\r\n$4\r\nquit\r\n%7\r\n$7\r\nsummary\r\n"));
        assert!(text.contains("$9\r\ndoc_flags\r\n~1\r\n+deprecated\r\n"));
        let docs = reply(&["COMMAND", "DOCS", "get"], Protocol::Resp2);
        assert!(docs.starts_with(b"*2\r\n$3\r\nget\r\n*8\r\n"));
        let all = reply(&["COMMAND", "DOCS"], Protocol::Resp3);
        assert!(all.starts_with(b"%15\r\n"));
    }
}
