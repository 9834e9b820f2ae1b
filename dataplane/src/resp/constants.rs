//! Named limits of the RESP layer, in one place.
//!
//! The `*_DEFAULT` values are what [`super::Limits::default`] hands a connection; a KN may lower
//! them (for example to its log block size), and the parser enforces whatever it is given. The
//! others are fixed by the protocol or by the parser's design. The `const` assertions at the end
//! fail the build if the limits stop agreeing with each other.

/// Default longest bulk string a client may send, in bytes: Redis's `proto-max-bulk-len`
/// default, so that clients written against Redis are not refused what Redis accepts.
pub const BULK_BYTES_MAX_DEFAULT: usize = 512 * 1024 * 1024;

/// Default most elements of one multibulk request. Redis before 7.0 refused more than this
/// (`1024*1024`); Redis 7 allows up to `INT_MAX`, which would let one request pin gigabytes of
/// argument bookkeeping.
pub const ARRAY_ELEMENT_COUNT_MAX_DEFAULT: usize = 1024 * 1024;

/// Default longest inline command line, counting every byte before its `\n`: Redis's
/// `PROTO_INLINE_MAX_SIZE`.
pub const INLINE_BYTES_MAX_DEFAULT: usize = 64 * 1024;

/// Most characters of a decimal integer in a length line or an argument: Redis's `string2ll`
/// refuses 21 or more (`LONG_STR_SIZE`), and `-9223372036854775808` has 20.
pub const INTEGER_CHARS_MAX: usize = 20;

/// Arguments a [`super::Request`] keeps without allocating. `SET key value EX s NX GET` has
/// seven, so every single-key command of the table fits.
pub const ARGS_INLINE_COUNT: usize = 8;

/// Most argument slots reserved up front when a multibulk header announces many elements; the
/// rest grow as elements actually arrive, so a header alone cannot make the parser allocate
/// much (Redis reserves at most 1024 the same way).
pub const ARGS_RESERVE_COUNT_MAX: usize = 1024;

/// Bytes of a command name or argument quoted in an unknown-command or unknown-subcommand error
/// (Redis prints them with `%.128s`).
pub const ERROR_QUOTE_BYTES_MAX: usize = 128;

/// Longest client name `HELLO ... SETNAME` accepts, in bytes. Redis has no limit of its own
/// beyond the bulk length; a KN keeps the name per connection, so it is bounded here.
pub const CLIENT_NAME_BYTES_MAX: usize = 256;

// A default inline line must be able to hold at least one full-length integer argument, and the
// default array limit must not be smaller than what a full inline line can carry (one argument
// per two bytes), so an inline request is never refused for a count its multibulk twin passes.
const _: () = assert!(INLINE_BYTES_MAX_DEFAULT > INTEGER_CHARS_MAX);
const _: () = assert!(ARRAY_ELEMENT_COUNT_MAX_DEFAULT >= INLINE_BYTES_MAX_DEFAULT / 2);
// The inline argument store must hold the longest command of the table without spilling.
const _: () = assert!(ARGS_INLINE_COUNT >= 7);
const _: () = assert!(ARGS_RESERVE_COUNT_MAX <= ARRAY_ELEMENT_COUNT_MAX_DEFAULT);
