//! memcached's meta commands `mg`, `ms`, `md`, `ma`, `mn`, `me` (protocol.md §11): the line parser and the reply
//! encoder. Execution is in [`crate::exec::meta`].
//!
//! A meta line is `<cmd> <key> [<datalen>] <flag>*`. Each flag is one character, optionally followed by a token
//! (`T30`, `Oabc`); a flag may appear once. The parser keeps the flags in request order ([`MetaCommand::flags`]),
//! because memcached answers the return flags in that order and applies `T`/`N` in that order too.
//!
//! As in memcached's `_meta_flag_preparse`, every command accepts the union of all flags and ignores the ones that
//! mean nothing to it; an unknown flag character is an error. Errors use memcached's exact strings
//! (`CLIENT_ERROR duplicate flag`, `CLIENT_ERROR invalid flag`, `CLIENT_ERROR bad token in command line format`, ...),
//! with three choices of ours, all in the direction of protocol.md §2 and decisions.md #7:
//! - a key over `key_max` answers `CLIENT_ERROR key too long` (memcached: `bad command line format`);
//! - a key with control characters is refused with `CLIENT_ERROR bad command line format`, and so is a base64 (`b`)
//!   key whose *decoded* bytes contain a space, control character or DEL, so every key stays a valid classic key that
//!   replication, dumps and `get` can carry; an opaque token with a control character (a bare `\r` mid-line) is
//!   refused the same way, since it would be echoed into the reply line;
//! - once `ms` has a valid `<datalen>`, every later error skips the data block (memcached skips it only for errors
//!   found after its flag scan).
//!
//! `ms` with a missing or invalid `<datalen>` answers `CLIENT_ERROR bad data chunk` (nothing can be skipped); a
//! `<datalen>` over `item_size_max` answers `SERVER_ERROR object too large for cache` and skips the block. A meta
//! command without a key answers `ERROR`, as memcached's token-count check does (`me` answers
//! `CLIENT_ERROR bad command line format`, as memcached's `me` does).
//!
//! Invariants of a parsed [`MetaCommand`] (checked by the `meta` fuzz target): the key is 1..=`key_max` bytes with no
//! byte <= 0x20 and no DEL (after base64 decoding when `b` was given; empty only for `mn`); an opaque token is at most
//! [`OPAQUE_MAX`] bytes; an `ms` value is at most `item_size_max` bytes.

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};

use super::lex::{parse_i64, parse_u32, parse_u64};
use super::{ArithOp, ErrorReply, Limits, LineError};

/// Longest opaque token, the `O` included (memcached's `MFLAG_MAX_OPAQUE_LENGTH`).
pub const OPAQUE_MAX: usize = 32;

/// Most tokens on a meta line, the command and key included (memcached counts a terminal token too and refuses more
/// than its `MFLAG_MAX_OPT_LENGTH` of 20).
pub const TOKENS_MAX: usize = 19;

/// Which meta command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaKind {
    /// `mg`: read, optionally touch, vivify or win a recache.
    Get,
    /// `ms`: store (set, add, replace, append, prepend, compare-and-set).
    Set,
    /// `md`: delete, invalidate (mark stale) or empty the value.
    Delete,
    /// `ma`: increment or decrement, optionally creating the counter.
    Arith,
    /// `mn`: answers `MN` (the end of a pipeline).
    NoOp,
    /// `me`: a human-readable dump of an item's metadata.
    Debug,
}

/// The mode of `ms` (`M<mode>`, case-insensitive as in memcached).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaSetMode {
    /// `MS`: set (the default).
    Set,
    /// `ME`: add.
    Add,
    /// `MA`: append.
    Append,
    /// `MP`: prepend.
    Prepend,
    /// `MR`: replace.
    Replace,
}

/// One request flag, with its token parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaFlag {
    /// `b`: the key is base64; a returned key is base64 too, followed by `b`.
    Base64,
    /// `c`: return the cas (the item's version).
    ReturnCas,
    /// `f`: return the client flags.
    ReturnFlags,
    /// `h`: return whether the item was fetched before.
    ReturnHit,
    /// `k`: return the key.
    ReturnKey,
    /// `l`: return the seconds since the last access.
    ReturnLastAccess,
    /// `O<opaque>`: copied back verbatim; holds the whole token, `O` included (at most [`OPAQUE_MAX`] bytes).
    Opaque(Bytes),
    /// `q`: quiet, the nominal reply is not sent.
    Quiet,
    /// `s`: return the value size.
    ReturnSize,
    /// `t`: return the remaining TTL (-1 = never expires).
    ReturnTtl,
    /// `u`: do not bump the item in the LRU (accepted; there is no LRU).
    NoBump,
    /// `v`: return the value.
    ReturnValue,
    /// `x` (`md`): empty the value but keep the item.
    RemoveValue,
    /// `I`: invalidate (`md`: mark stale; `ms` with `C`: store as stale when the cas is older).
    Invalidate,
    /// `E<cas>`: the version to give the item if it is modified.
    NewCas(u64),
    /// `N<ttl>`: create the item on a miss (`mg`: empty, `ma`: with `J`, `ms`: append/prepend).
    Vivify(i64),
    /// `R<ttl>`: win the recache when the remaining TTL is below this.
    Recache(i64),
    /// `T<ttl>`: set the TTL.
    Ttl(i64),
    /// `F<flags>`: the client flags to store.
    ClientFlags(u32),
    /// `C<cas>`: compare the cas.
    CompareCas(u64),
    /// `M<mode>` on `ms`.
    SetMode(MetaSetMode),
    /// `M<mode>` on `ma` (`I`/`+` increment, `D`/`-` decrement).
    ArithMode(ArithOp),
    /// `J<initial>`: `ma`'s initial value on auto-create (default 0).
    Initial(u64),
    /// `D<delta>`: `ma`'s delta (default 1).
    Delta(u64),
    /// A flag accepted and ignored: `P`, `L` (proxy hints), and `M` on `mg`/`md`.
    Ignored(u8),
}

/// A parsed meta command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaCommand {
    /// Which command.
    pub kind: MetaKind,
    /// The key, base64-decoded when `b` was given; empty for `mn`.
    pub key: Bytes,
    /// The key came base64-encoded (`b` flag, or `me <key> b`): a returned key is encoded again.
    pub base64: bool,
    /// The flags in request order, each at most once.
    pub flags: Vec<MetaFlag>,
    /// The data block of `ms`.
    pub value: Bytes,
    /// The command line as received (without its line ending), so a node can forward the command unchanged.
    pub line: Bytes,
}

impl MetaCommand {
    /// Attaches the data block of `ms`.
    pub fn set_value(&mut self, value: Bytes) {
        self.value = value;
    }

    /// The first flag for which `f` returns something.
    pub fn find<T>(&self, f: impl Fn(&MetaFlag) -> Option<T>) -> Option<T> {
        self.flags.iter().find_map(f)
    }

    /// True when `flag` was given (for flags without a token).
    pub fn has(&self, flag: &MetaFlag) -> bool {
        self.flags.contains(flag)
    }

    /// `q` was given.
    pub fn quiet(&self) -> bool {
        self.has(&MetaFlag::Quiet)
    }

    /// `T<ttl>`.
    pub fn ttl(&self) -> Option<i64> {
        self.find(|f| match f {
            MetaFlag::Ttl(t) => Some(*t),
            _ => None,
        })
    }

    /// `N<ttl>`.
    pub fn vivify(&self) -> Option<i64> {
        self.find(|f| match f {
            MetaFlag::Vivify(t) => Some(*t),
            _ => None,
        })
    }

    /// `C<cas>`.
    pub fn compare_cas(&self) -> Option<u64> {
        self.find(|f| match f {
            MetaFlag::CompareCas(c) => Some(*c),
            _ => None,
        })
    }

    /// `E<cas>`.
    pub fn new_cas(&self) -> Option<u64> {
        self.find(|f| match f {
            MetaFlag::NewCas(c) => Some(*c),
            _ => None,
        })
    }

    /// `F<flags>`, default 0.
    pub fn client_flags(&self) -> u32 {
        self.find(|f| match f {
            MetaFlag::ClientFlags(c) => Some(*c),
            _ => None,
        })
        .unwrap_or(0)
    }

    /// `ms`'s mode, default set.
    pub fn set_mode(&self) -> MetaSetMode {
        self.find(|f| match f {
            MetaFlag::SetMode(m) => Some(*m),
            _ => None,
        })
        .unwrap_or(MetaSetMode::Set)
    }

    /// `ma`'s mode, default increment.
    pub fn arith_mode(&self) -> ArithOp {
        self.find(|f| match f {
            MetaFlag::ArithMode(m) => Some(*m),
            _ => None,
        })
        .unwrap_or(ArithOp::Incr)
    }

    /// `D<delta>`, default 1.
    pub fn delta(&self) -> u64 {
        self.find(|f| match f {
            MetaFlag::Delta(d) => Some(*d),
            _ => None,
        })
        .unwrap_or(1)
    }

    /// `J<initial>`, default 0.
    pub fn initial(&self) -> u64 {
        self.find(|f| match f {
            MetaFlag::Initial(i) => Some(*i),
            _ => None,
        })
        .unwrap_or(0)
    }
}

/// What [`parse`] made of a meta command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaParsed {
    /// A whole command.
    Ready(MetaCommand),
    /// `ms`: a data block of `len` bytes (+ `\r\n`) follows.
    NeedData {
        /// The command, without its value yet.
        command: MetaCommand,
        /// Length of the data block.
        len: usize,
    },
}

/// Parses a meta command line; `tokens[0]` is the command name. Tokens are slices of `line`.
pub fn parse(line: &Bytes, tokens: &[&[u8]], limits: &Limits) -> Result<MetaParsed, LineError> {
    let mut parsed = parse_command(line, tokens, limits)?;
    match &mut parsed {
        MetaParsed::Ready(c) | MetaParsed::NeedData { command: c, .. } => c.line = line.clone(),
    }
    Ok(parsed)
}

fn parse_command(line: &Bytes, tokens: &[&[u8]], limits: &Limits) -> Result<MetaParsed, LineError> {
    let kind = match tokens.first().copied() {
        Some(b"mg") => MetaKind::Get,
        Some(b"ms") => MetaKind::Set,
        Some(b"md") => MetaKind::Delete,
        Some(b"ma") => MetaKind::Arith,
        Some(b"mn") => MetaKind::NoOp,
        Some(b"me") => MetaKind::Debug,
        _ => return Err(LineError::new(ErrorReply::UnknownCommand)),
    };
    match kind {
        // memcached's `mn` ignores anything after it.
        MetaKind::NoOp => Ok(MetaParsed::Ready(MetaCommand {
            kind,
            key: Bytes::new(),
            base64: false,
            flags: Vec::new(),
            value: Bytes::new(),
            line: Bytes::new(),
        })),
        MetaKind::Debug => parse_debug(line, tokens, limits).map(MetaParsed::Ready),
        MetaKind::Set => parse_set(line, tokens, limits),
        _ => {
            let Some(&key) = tokens.get(1) else {
                return Err(LineError::new(ErrorReply::UnknownCommand));
            };
            parse_flags(kind, line, key, &tokens[2..], limits)
                .map(MetaParsed::Ready)
                .map_err(LineError::new)
        }
    }
}

/// `ms <key> <datalen> <flag>*`: `<datalen>` first, so that every later error skips the data block.
fn parse_set(line: &Bytes, tokens: &[&[u8]], limits: &Limits) -> Result<MetaParsed, LineError> {
    let Some(&key) = tokens.get(1) else {
        return Err(LineError::new(ErrorReply::UnknownCommand));
    };
    // memcached reads <datalen> with strtol: no number (or a negative one) is a bad command line; a number over
    // INT_MAX - 2 is a bad data chunk.
    let len = tokens
        .get(2)
        .and_then(|t| parse_i64(t))
        .filter(|&n| n >= 0)
        .ok_or_else(|| LineError::new(ErrorReply::BadCommandLine))? as u64;
    if len > i32::MAX as u64 - 2 {
        return Err(LineError::new(ErrorReply::BadDataChunk));
    }
    let fail = |error| LineError {
        error,
        swallow: len + 2,
        close: false,
    };
    if len > u64::from(limits.item_size_max) {
        return Err(fail(ErrorReply::TooLarge));
    }
    let command = parse_flags(MetaKind::Set, line, key, &tokens[3..], limits).map_err(fail)?;
    Ok(MetaParsed::NeedData {
        command,
        // len <= i32::MAX, so it fits a usize.
        len: len as usize,
    })
}

/// `me <key> [b]`: memcached looks only at whether the token after the key is exactly `b`.
fn parse_debug(line: &Bytes, tokens: &[&[u8]], limits: &Limits) -> Result<MetaCommand, LineError> {
    let bad = || LineError::new(ErrorReply::BadCommandLine);
    let key = *tokens.get(1).ok_or_else(bad)?;
    let base64 = tokens.get(2) == Some(&&b"b"[..]);
    let key = decode_key(line, key, base64, limits).map_err(|e| match e {
        ErrorReply::KeyTooLong => LineError::new(e),
        _ => bad(),
    })?;
    Ok(MetaCommand {
        kind: MetaKind::Debug,
        key,
        base64,
        flags: Vec::new(),
        value: Bytes::new(),
        line: Bytes::new(),
    })
}

/// The key and flags of `mg`, `ms`, `md`, `ma`.
fn parse_flags(
    kind: MetaKind,
    line: &Bytes,
    key: &[u8],
    tokens: &[&[u8]],
    limits: &Limits,
) -> Result<MetaCommand, ErrorReply> {
    let head = if kind == MetaKind::Set { 3 } else { 2 };
    if head + tokens.len() > TOKENS_MAX {
        return Err(client("options flags are too long"));
    }
    // memcached's md and ma replace every error of its flag scan (which includes the base64 decoding) with one
    // string; the opaque length and the `ma` mode are checked after the scan and keep theirs.
    let scan_error = |e: ErrorReply| match kind {
        MetaKind::Delete | MetaKind::Arith => client("invalid or duplicate flag"),
        _ => e,
    };
    let mut seen = [false; 128];
    let mut flags = Vec::with_capacity(tokens.len());
    for &t in tokens {
        let flag = parse_flag(kind, line, t, &mut seen).map_err(|e| match e {
            FlagError::Scan(e) => scan_error(e),
            FlagError::Late(e) => e,
        })?;
        flags.push(flag);
    }
    let base64 = flags.contains(&MetaFlag::Base64);
    let key = decode_key(line, key, base64, limits).map_err(|e| match e {
        // Length and character checks are ours, not part of memcached's scan.
        ErrorReply::Client(_) => scan_error(e),
        e => e,
    })?;
    Ok(MetaCommand {
        kind,
        key,
        base64,
        flags,
        value: Bytes::new(),
        line: Bytes::new(),
    })
}

/// Why a flag was refused: during memcached's flag scan, or by a check it makes after the scan.
enum FlagError {
    Scan(ErrorReply),
    Late(ErrorReply),
}

impl From<ErrorReply> for FlagError {
    fn from(e: ErrorReply) -> Self {
        FlagError::Scan(e)
    }
}

/// One flag token. `seen` records flag characters, which may not repeat.
fn parse_flag(
    kind: MetaKind,
    line: &Bytes,
    t: &[u8],
    seen: &mut [bool; 128],
) -> Result<MetaFlag, FlagError> {
    // Tokens are never empty (the tokenizer skips runs of spaces).
    let (&c, arg) = t.split_first().ok_or(ErrorReply::BadCommandLine)?;
    if c >= 127 || seen[usize::from(c)] {
        return Err(client("duplicate flag").into());
    }
    seen[usize::from(c)] = true;
    let bad_token = || client("bad token in command line format");
    let flag = match c {
        b'b' => MetaFlag::Base64,
        b'c' => MetaFlag::ReturnCas,
        b'f' => MetaFlag::ReturnFlags,
        b'h' => MetaFlag::ReturnHit,
        b'k' => MetaFlag::ReturnKey,
        b'l' => MetaFlag::ReturnLastAccess,
        b'q' => MetaFlag::Quiet,
        b's' => MetaFlag::ReturnSize,
        b't' => MetaFlag::ReturnTtl,
        b'u' => MetaFlag::NoBump,
        b'v' => MetaFlag::ReturnValue,
        // `md`'s only (newer memcached); the other commands refuse it as memcached does.
        b'x' if kind == MetaKind::Delete => MetaFlag::RemoveValue,
        b'I' => MetaFlag::Invalidate,
        b'P' | b'L' => MetaFlag::Ignored(c),
        b'O' if t.len() > OPAQUE_MAX => {
            return Err(FlagError::Late(client("opaque token too long")))
        }
        // A bare `\r` or other control byte mid-line would be echoed into the reply line; memcached echoes any
        // bytes, we refuse them as we refuse them in keys.
        b'O' if t.iter().any(|&c| c < b' ' || c == 0x7f) => {
            return Err(FlagError::Late(ErrorReply::BadCommandLine))
        }
        b'O' => MetaFlag::Opaque(line.slice_ref(t)),
        b'N' => MetaFlag::Vivify(parse_i64(arg).ok_or_else(bad_token)?),
        b'R' => MetaFlag::Recache(parse_i64(arg).ok_or_else(bad_token)?),
        b'T' => MetaFlag::Ttl(parse_i64(arg).ok_or_else(bad_token)?),
        b'C' => MetaFlag::CompareCas(parse_u64(arg).ok_or_else(bad_token)?),
        b'E' => MetaFlag::NewCas(parse_u64(arg).ok_or_else(bad_token)?),
        // memcached leaves its default message for a bad F token.
        b'F' => MetaFlag::ClientFlags(parse_u32(arg).ok_or(ErrorReply::BadCommandLine)?),
        b'J' => MetaFlag::Initial(
            parse_u64(arg).ok_or_else(|| client("invalid numeric initial value"))?,
        ),
        b'D' => {
            MetaFlag::Delta(parse_u64(arg).ok_or_else(|| client("invalid numeric delta value"))?)
        }
        b'M' => parse_mode(kind, arg)?,
        _ => return Err(client("invalid flag").into()),
    };
    Ok(flag)
}

/// `M<mode>`: one character, meaningful to `ms` and `ma` only.
fn parse_mode(kind: MetaKind, arg: &[u8]) -> Result<MetaFlag, FlagError> {
    let [m] = arg else {
        return Err(client("incorrect length for M token").into());
    };
    let late = |msg| Err(FlagError::Late(client(msg)));
    let flag = match (kind, m.to_ascii_uppercase()) {
        (MetaKind::Set, b'S') => MetaFlag::SetMode(MetaSetMode::Set),
        (MetaKind::Set, b'E') => MetaFlag::SetMode(MetaSetMode::Add),
        (MetaKind::Set, b'A') => MetaFlag::SetMode(MetaSetMode::Append),
        (MetaKind::Set, b'P') => MetaFlag::SetMode(MetaSetMode::Prepend),
        (MetaKind::Set, b'R') => MetaFlag::SetMode(MetaSetMode::Replace),
        (MetaKind::Set, _) => return late("invalid mode for ms M token"),
        (MetaKind::Arith, b'I' | b'+') => MetaFlag::ArithMode(ArithOp::Incr),
        (MetaKind::Arith, b'D' | b'-') => MetaFlag::ArithMode(ArithOp::Decr),
        (MetaKind::Arith, _) => return late("invalid mode for ma M token"),
        _ => MetaFlag::Ignored(b'M'),
    };
    Ok(flag)
}

/// The key as stored: the token itself (zero-copy), or its base64 decoding. Either way it must be a valid key
/// (decisions.md #7), spaces included since a decoded key could contain them.
fn decode_key(
    line: &Bytes,
    token: &[u8],
    base64: bool,
    limits: &Limits,
) -> Result<Bytes, ErrorReply> {
    let key = if base64 {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token)
            .map_err(|_| client("error decoding key"))?;
        Bytes::from(decoded)
    } else {
        line.slice_ref(token)
    };
    if key.is_empty() {
        return Err(ErrorReply::BadCommandLine);
    }
    if key.len() > limits.key_max {
        return Err(ErrorReply::KeyTooLong);
    }
    if !key.iter().all(|&c| super::key_byte_ok(c)) {
        return Err(ErrorReply::BadCommandLine);
    }
    Ok(key)
}

fn client(msg: &'static str) -> ErrorReply {
    ErrorReply::Client(msg.into())
}

/// A meta reply's status code (the two letters that start the line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaStatus {
    /// `HD`: success without a value.
    Done,
    /// `EN`: a miss (`mg`, `me`).
    Miss,
    /// `NF`: not found.
    NotFound,
    /// `NS`: not stored.
    NotStored,
    /// `EX`: the cas did not match (or an `E` version not above the current one).
    Exists,
}

/// Whether `q` hides an answer with this two-letter code (memcached 1.6.18's quiet mode): `mg` a miss (`EN`), `ms`
/// and `md` `HD`, `ma` `HD` and `VA` (of an update: memcached sends the answer for an item `N` created, which only
/// the node that ran it knows). Every other answer, errors included, is sent. The one rule for the node that runs
/// a command (`crate::exec::meta`) and the node that forwarded it (`crate::node::plan`).
pub fn hidden_by_quiet(kind: MetaKind, code: &[u8]) -> bool {
    match kind {
        MetaKind::Get => code == b"EN",
        MetaKind::Set | MetaKind::Delete => code == b"HD",
        MetaKind::Arith => code == b"HD" || code == b"VA",
        _ => false,
    }
}

impl MetaStatus {
    /// The two-letter code.
    pub fn code(self) -> &'static [u8; 2] {
        match self {
            MetaStatus::Done => b"HD",
            MetaStatus::Miss => b"EN",
            MetaStatus::NotFound => b"NF",
            MetaStatus::NotStored => b"NS",
            MetaStatus::Exists => b"EX",
        }
    }
}

/// One flag of a reply line, written as ` <char><token>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReturnFlag {
    /// `c<cas>`.
    Cas(u64),
    /// `f<flags>`.
    ClientFlags(u32),
    /// `h0` / `h1`.
    Hit(bool),
    /// `k<key>`; when `base64`, the key is written base64-encoded and followed by ` b`.
    Key {
        /// The key as stored.
        key: Bytes,
        /// Encode it, and add the `b` flag.
        base64: bool,
    },
    /// `l<seconds>`.
    LastAccess(u64),
    /// The request's opaque token, verbatim (`O` included).
    Opaque(Bytes),
    /// `s<size>`.
    Size(u64),
    /// `t<seconds>`, -1 for no expiry.
    Ttl(i64),
    /// `W`: this client won the recache.
    Won,
    /// `X`: the item is stale.
    Stale,
    /// `Z`: another client already won.
    AlreadyWon,
}

/// The fields of an `me` reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebugInfo {
    /// The key as stored.
    pub key: Bytes,
    /// Write the key base64-encoded.
    pub base64: bool,
    /// Remaining TTL in seconds, -1 for none.
    pub exp: i64,
    /// Seconds since the last access.
    pub la: u64,
    /// The version.
    pub cas: u64,
    /// Fetched before.
    pub fetched: bool,
    /// Slab class (always 0 here).
    pub cls: u32,
    /// Value size in bytes.
    pub size: u64,
}

/// A meta-command reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaReply {
    /// `VA <size> <flags>*\r\n<data>\r\n`.
    Value {
        /// Return flags, in order.
        flags: Vec<ReturnFlag>,
        /// The data block.
        data: Bytes,
    },
    /// `<code> <flags>*\r\n`.
    Status {
        /// The code.
        status: MetaStatus,
        /// Return flags, in order.
        flags: Vec<ReturnFlag>,
    },
    /// `MN\r\n`.
    NoOp,
    /// `ME <key> exp=<ttl> la=<s> cas=<cas> fetch=<yes|no> cls=<id> size=<bytes>\r\n`.
    Debug(DebugInfo),
}

/// Appends the bytes of `reply`.
pub fn encode(reply: &MetaReply, out: &mut BytesMut) {
    let mut num = itoa::Buffer::new();
    match reply {
        MetaReply::Value { flags, data } => {
            out.reserve(data.len() + 32);
            out.put_slice(b"VA ");
            out.put_slice(num.format(data.len()).as_bytes());
            encode_flags(flags, out);
            out.put_slice(b"\r\n");
            out.put_slice(data);
            out.put_slice(b"\r\n");
        }
        MetaReply::Status { status, flags } => {
            out.put_slice(status.code());
            encode_flags(flags, out);
            out.put_slice(b"\r\n");
        }
        MetaReply::NoOp => out.put_slice(b"MN\r\n"),
        MetaReply::Debug(d) => {
            out.put_slice(b"ME ");
            put_key(&d.key, d.base64, out);
            out.put_slice(b" exp=");
            out.put_slice(num.format(d.exp).as_bytes());
            out.put_slice(b" la=");
            out.put_slice(num.format(d.la).as_bytes());
            out.put_slice(b" cas=");
            out.put_slice(num.format(d.cas).as_bytes());
            out.put_slice(if d.fetched {
                &b" fetch=yes"[..]
            } else {
                &b" fetch=no"[..]
            });
            out.put_slice(b" cls=");
            out.put_slice(num.format(d.cls).as_bytes());
            out.put_slice(b" size=");
            out.put_slice(num.format(d.size).as_bytes());
            out.put_slice(b"\r\n");
        }
    }
}

fn encode_flags(flags: &[ReturnFlag], out: &mut BytesMut) {
    let mut num = itoa::Buffer::new();
    for f in flags {
        out.put_u8(b' ');
        match f {
            ReturnFlag::Cas(c) => put_num(out, b'c', num.format(*c)),
            ReturnFlag::ClientFlags(v) => put_num(out, b'f', num.format(*v)),
            ReturnFlag::Hit(h) => out.put_slice(if *h { b"h1" } else { b"h0" }),
            ReturnFlag::Key { key, base64 } => {
                out.put_u8(b'k');
                put_key(key, *base64, out);
                if *base64 {
                    out.put_slice(b" b");
                }
            }
            ReturnFlag::LastAccess(l) => put_num(out, b'l', num.format(*l)),
            ReturnFlag::Opaque(o) => out.put_slice(o),
            ReturnFlag::Size(s) => put_num(out, b's', num.format(*s)),
            ReturnFlag::Ttl(t) => put_num(out, b't', num.format(*t)),
            ReturnFlag::Won => out.put_u8(b'W'),
            ReturnFlag::Stale => out.put_u8(b'X'),
            ReturnFlag::AlreadyWon => out.put_u8(b'Z'),
        }
    }
}

fn put_num(out: &mut BytesMut, flag: u8, digits: &str) {
    out.put_u8(flag);
    out.put_slice(digits.as_bytes());
}

fn put_key(key: &[u8], base64: bool, out: &mut BytesMut) {
    if base64 {
        out.put_slice(
            base64::engine::general_purpose::STANDARD
                .encode(key)
                .as_bytes(),
        );
    } else {
        out.put_slice(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::lex::Tokens;

    fn limits() -> Limits {
        Limits {
            line_max: 256,
            key_max: 8,
            item_size_max: 64,
            keys_per_get_max: 8,
            nodes_max: 4,
            raft_message_max: 1024,
        }
    }

    fn parse_line(line: &'static [u8]) -> Result<MetaParsed, LineError> {
        let line = Bytes::from_static(line);
        let tokens: Vec<&[u8]> = Tokens::new(&line).collect();
        parse(&line, &tokens, &limits())
    }

    fn ready(line: &'static [u8]) -> MetaCommand {
        match parse_line(line) {
            Ok(MetaParsed::Ready(c)) => c,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    fn error(line: &'static [u8]) -> (String, u64) {
        let e = parse_line(line).expect_err("an error");
        (e.error.line().into_owned(), e.swallow)
    }

    fn encoded(reply: MetaReply) -> String {
        let mut out = BytesMut::new();
        encode(&reply, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn flags_keep_request_order_and_the_key_is_not_copied() {
        let line = Bytes::from_static(b"mg foo  v Oab T-5 k c");
        let tokens: Vec<&[u8]> = Tokens::new(&line).collect();
        let Ok(MetaParsed::Ready(c)) = parse(&line, &tokens, &limits()) else {
            panic!()
        };
        assert_eq!(c.kind, MetaKind::Get);
        assert_eq!(&c.key[..], b"foo");
        assert_eq!(
            c.key.as_ptr(),
            line[3..].as_ptr(),
            "the key is a slice of the line"
        );
        assert_eq!(
            c.flags,
            vec![
                MetaFlag::ReturnValue,
                MetaFlag::Opaque(Bytes::from_static(b"Oab")),
                MetaFlag::Ttl(-5),
                MetaFlag::ReturnKey,
                MetaFlag::ReturnCas,
            ]
        );
        assert_eq!(
            (c.ttl(), c.quiet(), c.delta(), c.initial()),
            (Some(-5), false, 1, 0)
        );
    }

    #[test]
    fn every_flag_token_parses() {
        // "bjE=" is base64 for "n1".
        let c = ready(b"ma bjE= N10 J5 D3 MD C7 E9 q t c v k O1 b");
        assert_eq!((&c.key[..], c.base64), (&b"n1"[..], true));
        assert_eq!(c.vivify(), Some(10));
        assert_eq!(
            (c.initial(), c.delta(), c.arith_mode()),
            (5, 3, ArithOp::Decr)
        );
        assert_eq!((c.compare_cas(), c.new_cas()), (Some(7), Some(9)));
        assert!(c.quiet());
        let c = ready(b"md k I x T30 C1 E2 F3 q");
        assert!(c.has(&MetaFlag::Invalidate) && c.has(&MetaFlag::RemoveValue));
        assert_eq!((c.ttl(), c.client_flags()), (Some(30), 3));
        let c = ready(b"mg k N1 R2 T3 E4 M? P1 Lx u h l s f");
        assert_eq!(c.flags[4], MetaFlag::Ignored(b'M'));
        assert_eq!(ready(b"ma k M+").arith_mode(), ArithOp::Incr);
        assert_eq!(ready(b"ma k Mi").arith_mode(), ArithOp::Incr);
        assert_eq!(ready(b"ma k").arith_mode(), ArithOp::Incr);
        assert_eq!(ready(b"mn extra tokens").kind, MetaKind::NoOp);
        let c = ready(b"me a2V5 b");
        assert_eq!(
            (c.kind, &c.key[..], c.base64),
            (MetaKind::Debug, &b"key"[..], true)
        );
    }

    #[test]
    fn set_needs_data_and_maps_modes() {
        for (line, mode) in [
            (&b"ms k 3"[..], MetaSetMode::Set),
            (b"ms k 3 MS", MetaSetMode::Set),
            (b"ms k 3 Me", MetaSetMode::Add),
            (b"ms k 3 MA", MetaSetMode::Append),
            (b"ms k 3 Mp", MetaSetMode::Prepend),
            (b"ms k 3 MR", MetaSetMode::Replace),
        ] {
            let line = Bytes::copy_from_slice(line);
            let tokens: Vec<&[u8]> = Tokens::new(&line).collect();
            let Ok(MetaParsed::NeedData { command, len }) = parse(&line, &tokens, &limits()) else {
                panic!("{line:?}")
            };
            assert_eq!(
                (command.set_mode(), len, command.kind),
                (mode, 3, MetaKind::Set)
            );
        }
    }

    #[test]
    fn set_errors_skip_the_data_block_once_its_length_is_known() {
        // As memcached 1.6.18 answers them (checked against Debian's).
        let bad_chunk = ("CLIENT_ERROR bad data chunk".to_string(), 0);
        let bad_line = ("CLIENT_ERROR bad command line format".to_string(), 0);
        assert_eq!(error(b"ms k"), bad_line);
        assert_eq!(error(b"ms k x"), bad_line);
        assert_eq!(error(b"ms k -1"), bad_line);
        assert_eq!(error(b"ms k 2147483646"), bad_chunk);
        assert_eq!(
            error(b"ms k 65"),
            ("SERVER_ERROR object too large for cache".into(), 67)
        );
        assert_eq!(
            error(b"ms k 64 w"),
            ("CLIENT_ERROR invalid flag".into(), 66)
        );
        assert_eq!(
            error(b"ms k 1 MX"),
            ("CLIENT_ERROR invalid mode for ms M token".into(), 3)
        );
        assert_eq!(
            error(b"ms toolongkey 1"),
            ("CLIENT_ERROR key too long".into(), 3)
        );
        assert_eq!(error(b"ms"), ("ERROR".into(), 0));
    }

    #[test]
    fn key_rules() {
        assert_eq!(error(b"mg"), ("ERROR".into(), 0));
        assert_eq!(
            error(b"mg 123456789"),
            ("CLIENT_ERROR key too long".into(), 0)
        );
        assert_eq!(ready(b"mg 12345678").key.len(), 8);
        assert_eq!(
            error(b"mg k\x00"),
            ("CLIENT_ERROR bad command line format".into(), 0)
        );
        // base64: the decoded length counts, and the decoded bytes must make a valid key.
        assert_eq!(ready(b"mg MTIzNDU2Nzg= b").key.len(), 8);
        assert_eq!(
            error(b"mg MTIzNDU2Nzg5 b"),
            ("CLIENT_ERROR key too long".into(), 0)
        );
        assert_eq!(
            error(b"mg AA== b"),
            ("CLIENT_ERROR bad command line format".into(), 0)
        );
        assert_eq!(
            error(b"mg a b"),
            ("CLIENT_ERROR error decoding key".into(), 0)
        );
        assert_eq!(
            error(b"me"),
            ("CLIENT_ERROR bad command line format".into(), 0)
        );
        assert_eq!(
            error(b"me a b"),
            ("CLIENT_ERROR bad command line format".into(), 0)
        );
    }

    #[test]
    fn flag_errors() {
        let e = |l| error(l).0;
        assert_eq!(e(b"mg k v v"), "CLIENT_ERROR duplicate flag");
        assert_eq!(e(b"mg k \xff"), "CLIENT_ERROR duplicate flag");
        assert_eq!(e(b"mg k S1"), "CLIENT_ERROR invalid flag");
        assert_eq!(
            e(b"mg k N"),
            "CLIENT_ERROR bad token in command line format"
        );
        assert_eq!(
            e(b"mg k C-1"),
            "CLIENT_ERROR bad token in command line format"
        );
        assert_eq!(
            e(b"mg k F4294967296"),
            "CLIENT_ERROR bad command line format"
        );
        assert_eq!(e(b"mg k J-1"), "CLIENT_ERROR invalid numeric initial value");
        assert_eq!(e(b"mg k Dx"), "CLIENT_ERROR invalid numeric delta value");
        assert_eq!(e(b"mg k M"), "CLIENT_ERROR incorrect length for M token");
        assert_eq!(e(b"md k Dx"), "CLIENT_ERROR invalid or duplicate flag");
        assert_eq!(e(b"ma k MQ"), "CLIENT_ERROR invalid mode for ma M token");
        assert_eq!(
            e(b"ma k O123456789012345678901234567890123"),
            "CLIENT_ERROR opaque token too long"
        );
        // Found by the fuzz target: a bare \r mid-line must not reach the reply line.
        assert_eq!(e(b"mg k O0\rmn"), "CLIENT_ERROR bad command line format");
        assert_eq!(e(b"md k O\x01"), "CLIENT_ERROR bad command line format");
        assert_eq!(
            e(b"mg k a b c d e f g h i j l m n o p q r s"),
            "CLIENT_ERROR options flags are too long"
        );
    }

    #[test]
    fn encode_every_reply_kind() {
        let flags = vec![
            ReturnFlag::Cas(u64::MAX),
            ReturnFlag::ClientFlags(u32::MAX),
            ReturnFlag::Hit(true),
            ReturnFlag::Hit(false),
            ReturnFlag::Key {
                key: Bytes::from_static(b"k1"),
                base64: false,
            },
            ReturnFlag::Key {
                key: Bytes::from_static(b"\xffk"),
                base64: true,
            },
            ReturnFlag::LastAccess(7),
            ReturnFlag::Opaque(Bytes::from_static(b"Oxy")),
            ReturnFlag::Size(3),
            ReturnFlag::Ttl(-1),
            ReturnFlag::AlreadyWon,
            ReturnFlag::Stale,
            ReturnFlag::Won,
        ];
        let line = " c18446744073709551615 f4294967295 h1 h0 kk1 k/2s= b l7 Oxy s3 t-1 Z X W";
        assert_eq!(
            encoded(MetaReply::Value {
                flags: flags.clone(),
                data: Bytes::from_static(b"a\r\nb"),
            }),
            format!("VA 4{line}\r\na\r\nb\r\n")
        );
        for (status, code) in [
            (MetaStatus::Done, "HD"),
            (MetaStatus::Miss, "EN"),
            (MetaStatus::NotFound, "NF"),
            (MetaStatus::NotStored, "NS"),
            (MetaStatus::Exists, "EX"),
        ] {
            assert_eq!(
                encoded(MetaReply::Status {
                    status,
                    flags: vec![]
                }),
                format!("{code}\r\n")
            );
            assert_eq!(
                encoded(MetaReply::Status {
                    status,
                    flags: flags.clone()
                }),
                format!("{code}{line}\r\n")
            );
        }
        assert_eq!(encoded(MetaReply::NoOp), "MN\r\n");
        assert_eq!(
            encoded(MetaReply::Debug(DebugInfo {
                key: Bytes::from_static(b"key"),
                base64: true,
                exp: -1,
                la: 2,
                cas: 3,
                fetched: true,
                cls: 0,
                size: 9,
            })),
            "ME a2V5 exp=-1 la=2 cas=3 fetch=yes cls=0 size=9\r\n"
        );
    }
}
