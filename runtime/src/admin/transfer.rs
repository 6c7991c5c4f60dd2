//! `dump`, `dumpkey` and `restore` (admin-tool.md §4): data to and from files, streamed item by item (nothing is
//! collected in memory), throttled by `--bwlimit`, with progress on stderr.
//!
//! File formats:
//! * `default`: `<key> <flag> <len> <version> <expire> '<data>'` and a newline per item, byte-compatible with
//!   flare-tools. `len` frames the data, so any bytes (newlines, quotes) round-trip; `restore` reads this format.
//! * `csv`: `# key, flag, len, version, expire, data`, then one row per item (fields quoted when they hold `,`,
//!   `"`, CR or LF). For spreadsheets; `restore` does not read it.
//!
//! `<expire>` is the absolute Unix time the server reported (0 = never). `restore` sends it as is, which memcached
//! semantics read as an absolute time, skips items already expired, and does not restore versions (as
//! flare-tools).

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flare_core::protocol::reply::ValueBlock;
use flare_core::protocol::{key_byte_ok, ITEM_SIZE_HARD_MAX};
use regex::bytes::Regex;

use super::args::{DumpArgs, DumpFormat, DumpkeyArgs, KeyFormat, RestoreArgs};
use super::client::{Conn, Endpoint};
use super::cluster::{parse_node_args, ArgForm, Nodes};
use super::error::{reason, AdminError, Result};
use super::progress::{Progress, Unit};
use super::{Ctx, Status};

/// `set`s sent before their replies are read.
const PIPELINE_ITEMS: usize = 64;
/// Bytes of `set`s buffered before they are sent.
const PIPELINE_BYTES: usize = 256 * 1024;

/// `dump host:port ... | --all`.
pub fn dump(ctx: &Ctx, a: DumpArgs) -> Result<Status> {
    let kbps = kbps(a.bwlimit.as_deref())?;
    let targets = dump_targets(ctx, &a, kbps)?;
    let mut out = DumpWriter::new(a.format, output(a.output.as_deref())?)?;
    for (at, command) in targets {
        let mut c = ctx.node(&at)?;
        let total = stat_u64(&mut c, "curr_items");
        let mut progress = Progress::transfer(&format!("dump {at}"), Unit::Items, total);
        let mut seen = 0;
        let n = c.dump(&command, |v| {
            out.write(&v)
                .map_err(|e| file_error(a.output.as_deref(), &e))?;
            seen += 1;
            progress.transfer_update(seen);
            Ok(())
        })?;
        progress.finish();
        eprintln!("{n} entries have been dumped from {at}.");
    }
    out.finish()
        .map_err(|e| file_error(a.output.as_deref(), &e))?;
    Ok(Status::Ok)
}

/// Each node to dump and its `dump` command: `dump 0 <P> <count> <kBps>` (its partition only), or with `--raw`
/// `dump 0 0 1 <kBps>` (everything: one partition holds every key), which needs no index server.
fn dump_targets(ctx: &Ctx, a: &DumpArgs, kbps: u64) -> Result<Vec<(Endpoint, String)>> {
    if !a.all && a.nodes.is_empty() {
        return Err(AdminError::Usage(
            "give the nodes to dump (host:port ...) or --all".into(),
        ));
    }
    let args = parse_node_args(&a.nodes, ArgForm::Node)?;
    let raw = format!("dump 0 0 1 {kbps}");
    if a.raw && !a.all {
        return Ok(args.into_iter().map(|x| (x.node, raw.clone())).collect());
    }
    let keys: Vec<String> = args.iter().map(|x| x.node.key()).collect();
    let mut index = ctx.index(&a.index, &keys)?;
    let nodes = Nodes::fetch(&mut index)?;
    let records: Vec<_> = if a.all {
        nodes.masters().into_iter().cloned().collect()
    } else {
        keys.iter()
            .map(|k| nodes.require(k).cloned())
            .collect::<Result<_>>()?
    };
    records
        .iter()
        .map(|n| {
            let at = Endpoint::new(n.name.clone(), n.port);
            if a.raw {
                return Ok((at, raw.clone()));
            }
            let p = n.partition.ok_or_else(|| {
                AdminError::Usage(format!(
                    "{} is a proxy: it has no partition (--raw dumps whatever it holds)",
                    n.key()
                ))
            })?;
            Ok((at, format!("dump 0 {p} {} {kbps}", filter_count(&nodes, p))))
        })
        .collect()
}

/// The partition count a dump of partition `p` filters with: P, or P + 1 for the preparing partition.
fn filter_count(nodes: &Nodes, p: u32) -> u32 {
    nodes.partition_count().max(p + 1)
}

/// `dumpkey host:port ... | --all`.
pub fn dumpkey(ctx: &Ctx, a: DumpkeyArgs) -> Result<Status> {
    if !a.all && a.nodes.is_empty() {
        return Err(AdminError::Usage(
            "give the nodes to dump (host:port ...) or --all".into(),
        ));
    }
    if a.partition.is_none() && a.partition_size.is_some() {
        return Err(AdminError::Usage(
            "--partition-size needs --partition".into(),
        ));
    }
    let kbps = kbps(a.bwlimit.as_deref())?;
    let args = parse_node_args(&a.nodes, ArgForm::Node)?;
    let keys: Vec<String> = args.iter().map(|x| x.node.key()).collect();
    let needs_index = a.all || (a.partition.is_some() && a.partition_size.is_none());
    let nodes = if needs_index {
        let mut index = ctx.index(&a.index.clone().into(), &keys)?;
        Some(Nodes::fetch(&mut index)?)
    } else {
        None
    };
    let targets: Vec<(Endpoint, Option<u32>)> = match &nodes {
        Some(n) if a.all => n
            .masters()
            .iter()
            .map(|m| (Endpoint::new(m.name.clone(), m.port), m.partition))
            .collect(),
        _ => args.into_iter().map(|x| (x.node, None)).collect(),
    };
    let mut out = output(a.output.as_deref())?;
    let ferr = |e: io::Error| file_error(a.output.as_deref(), &e);
    if a.format == KeyFormat::Csv {
        out.write_all(b"# key\n").map_err(ferr)?;
    }
    for (at, own) in targets {
        // Explicit -p/-s win; --all uses each master's own partition; -p alone takes the cluster's count (the
        // Ruby tool sends `dump_key <P>`, which Flare rejects).
        let filter = match (a.partition.or(own), a.partition_size, &nodes) {
            (Some(p), Some(s), _) => Some((p, s)),
            (Some(p), None, Some(n)) => Some((p, filter_count(n, p))),
            _ => None,
        };
        let command = match (filter, kbps) {
            (Some((p, s)), 0) => format!("dump_key {p} {s}"),
            (Some((p, s)), bw) => format!("dump_key {p} {s} {bw}"),
            (None, 0) => "dump_key".to_string(),
            (None, bw) => format!("dump_key -1 0 {bw}"),
        };
        let mut c = ctx.node(&at)?;
        let n = c.dump_keys(&command, |k| {
            match a.format {
                KeyFormat::Plain => out.write_all(k).and_then(|_| out.write_all(b"\n")),
                KeyFormat::Csv => write_csv_row(&mut out, &[k]),
            }
            .map_err(ferr)
        })?;
        eprintln!("{n} keys have been dumped from {at}.");
    }
    out.flush().map_err(ferr)?;
    Ok(Status::Ok)
}

/// `restore host:port -i FILE`.
pub fn restore(ctx: &Ctx, a: RestoreArgs) -> Result<Status> {
    if a.format != DumpFormat::Default {
        return Err(AdminError::Usage(
            "restore reads the default format (written by `dump -f default`)".into(),
        ));
    }
    // Only the first node is used, as flare-tools does: it routes every item to its partition's master.
    let at = Endpoint::parse(&a.nodes[0])?;
    let regex = |re: &Option<String>| -> Result<Option<Regex>> {
        re.as_deref()
            .map(|r| {
                Regex::new(r)
                    .map_err(|e| AdminError::Usage(format!("bad regular expression {r:?}: {e}")))
            })
            .transpose()
    };
    let filter = KeyFilter {
        include: regex(&a.include)?,
        exclude: regex(&a.exclude)?,
        prefix: a.prefix_include.clone().map(String::into_bytes),
    };
    let path = a.input.as_deref().filter(|p| *p != Path::new("-"));
    let (input, size): (Box<dyn Read>, Option<u64>) = match path {
        Some(p) => {
            let f = File::open(p).map_err(|e| file_error(Some(p), &e))?;
            let size = f.metadata().ok().map(|m| m.len());
            (Box::new(f), size)
        }
        None => (Box::new(io::stdin()), None),
    };
    let mut reader = DumpReader::new(BufReader::with_capacity(256 * 1024, input));
    let mut conn = if a.dry_run {
        None
    } else {
        Some(ctx.node(&at)?)
    };
    let mut sender = Sender::new(kbps(a.bwlimit.as_deref())?);
    let mut progress = Progress::transfer(&format!("restore {at}"), Unit::Bytes, size);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut counts = Counts::default();
    while let Some(e) = reader
        .next()
        .map_err(|why| AdminError::Failed(format!("{}: {why}", input_name(path))))?
    {
        progress.transfer_update(reader.position());
        if !filter.accepts(&e.key) {
            counts.skipped += 1;
            continue;
        }
        if e.exptime != 0 && e.exptime <= now {
            counts.expired += 1;
            continue;
        }
        if !e.key.iter().all(|&c| key_byte_ok(c)) {
            eprintln!(
                "skipping a key that cannot be sent: {:?}",
                String::from_utf8_lossy(&e.key)
            );
            counts.failed += 1;
            continue;
        }
        if a.print_keys {
            println!("{}", String::from_utf8_lossy(&e.key));
        }
        match conn.as_mut() {
            Some(c) => sender.add(c, &e, &mut counts)?,
            None => counts.restored += 1,
        }
    }
    if let Some(c) = conn.as_mut() {
        sender.flush(c, &mut counts)?;
    }
    progress.finish();
    println!("{} entries have been restored.", counts.restored);
    if counts.skipped + counts.expired + counts.failed > 0 {
        eprintln!(
            "{} skipped by the filters, {} already expired, {} failed.",
            counts.skipped, counts.expired, counts.failed
        );
    }
    Ok(if counts.failed == 0 {
        Status::Ok
    } else {
        Status::Ng
    })
}

#[derive(Debug, Default)]
struct Counts {
    restored: u64,
    skipped: u64,
    expired: u64,
    failed: u64,
}

struct KeyFilter {
    include: Option<Regex>,
    exclude: Option<Regex>,
    prefix: Option<Vec<u8>>,
}

impl KeyFilter {
    fn accepts(&self, key: &[u8]) -> bool {
        self.include.as_ref().is_none_or(|r| r.is_match(key))
            && self.prefix.as_ref().is_none_or(|p| key.starts_with(p))
            && !self.exclude.as_ref().is_some_and(|r| r.is_match(key))
    }
}

/// Pipelined `set`s with a byte-rate limit.
struct Sender {
    buf: Vec<u8>,
    keys: Vec<Vec<u8>>,
    bytes_per_sec: u64,
    started: Instant,
    sent: u64,
}

impl Sender {
    fn new(kbps: u64) -> Sender {
        Sender {
            buf: Vec::with_capacity(PIPELINE_BYTES + 1024),
            keys: Vec::new(),
            bytes_per_sec: kbps * 1024,
            started: Instant::now(),
            sent: 0,
        }
    }

    fn add(&mut self, conn: &mut Conn, e: &Entry, counts: &mut Counts) -> Result<()> {
        self.buf.extend_from_slice(b"set ");
        self.buf.extend_from_slice(&e.key);
        self.buf.extend_from_slice(
            format!(" {} {} {}\r\n", e.flags, e.exptime, e.data.len()).as_bytes(),
        );
        self.buf.extend_from_slice(&e.data);
        self.buf.extend_from_slice(b"\r\n");
        self.keys.push(e.key.clone());
        if self.keys.len() >= PIPELINE_ITEMS || self.buf.len() >= PIPELINE_BYTES {
            self.flush(conn, counts)?;
        }
        Ok(())
    }

    fn flush(&mut self, conn: &mut Conn, counts: &mut Counts) -> Result<()> {
        if self.keys.is_empty() {
            return Ok(());
        }
        conn.send_raw(&self.buf)?;
        self.sent += self.buf.len() as u64;
        self.buf.clear();
        for key in self.keys.drain(..) {
            // NOT_STORED ends the reply like any other line (admin-tool.md §7 fixes flare-tools' hang on it).
            let reply = conn.read_line()?;
            if reply == "STORED" {
                counts.restored += 1;
            } else {
                counts.failed += 1;
                eprintln!("{}: {reply}", String::from_utf8_lossy(&key));
            }
        }
        if self.bytes_per_sec > 0 {
            let allowed = self.started.elapsed().as_secs_f64() * self.bytes_per_sec as f64;
            let ahead = self.sent as f64 - allowed;
            if ahead > 0.0 {
                std::thread::sleep(Duration::from_secs_f64(ahead / self.bytes_per_sec as f64));
            }
        }
        Ok(())
    }
}

/// One item of a `default`-format dump file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Key.
    pub key: Vec<u8>,
    /// Client flags.
    pub flags: u32,
    /// Version (read, not restored).
    pub version: u64,
    /// Absolute expiry, 0 = never.
    pub exptime: u64,
    /// Data.
    pub data: Vec<u8>,
}

/// Reads `default`-format items: `<key> <flag> <len> <version> <expire> '` + `len` bytes + `'\n`.
pub struct DumpReader<R: BufRead> {
    input: R,
    position: u64,
}

impl<R: BufRead> DumpReader<R> {
    /// A reader over `input`.
    pub fn new(input: R) -> Self {
        DumpReader { input, position: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The next item, `None` at the end of the input; an error names the byte offset of the bad item.
    pub fn next(&mut self) -> std::result::Result<Option<Entry>, String> {
        let start = self.position;
        let bad = |why: &str| format!("bad item at byte {start}: {why}");
        let mut head = Vec::new();
        let n = self
            .input
            .read_until(b'\'', &mut head)
            .map_err(|e| reason(&e))?;
        self.position += n as u64;
        let trimmed: &[u8] = {
            let s = head
                .iter()
                .position(|c| !matches!(c, b'\n' | b'\r' | b' '))
                .unwrap_or(head.len());
            &head[s..]
        };
        if trimmed.is_empty() {
            return Ok(None);
        }
        let Some(fields) = trimmed.strip_suffix(b"'") else {
            return Err(bad("no opening quote"));
        };
        let fields: Vec<&[u8]> = fields
            .split(|&c| c == b' ')
            .filter(|f| !f.is_empty())
            .collect();
        let [key, flags, len, version, exptime] = fields.as_slice() else {
            return Err(bad("expected <key> <flag> <len> <version> <expire>"));
        };
        let num = |t: &[u8]| {
            std::str::from_utf8(t)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
        };
        let flags = num(flags)
            .and_then(|f| u32::try_from(f).ok())
            .ok_or_else(|| bad("bad flag"))?;
        let len = num(len)
            .filter(|l| *l <= u64::from(ITEM_SIZE_HARD_MAX))
            .ok_or_else(|| bad("bad length"))?;
        let version = num(version).ok_or_else(|| bad("bad version"))?;
        let exptime = num(exptime).ok_or_else(|| bad("bad expire"))?;
        // len ≤ ITEM_SIZE_HARD_MAX (2^31 − 1) fits usize on every supported target.
        let mut data = vec![0; len as usize];
        self.input
            .read_exact(&mut data)
            .map_err(|_| bad("data shorter than its length"))?;
        let mut end = [0u8; 2];
        self.input
            .read_exact(&mut end)
            .map_err(|_| bad("no closing quote"))?;
        if &end != b"'\n" {
            return Err(bad("data not followed by a quote and a newline"));
        }
        self.position += len + 2;
        Ok(Some(Entry {
            key: key.to_vec(),
            flags,
            version,
            exptime,
            data,
        }))
    }
}

/// Writes dump items in a [`DumpFormat`].
pub struct DumpWriter {
    format: DumpFormat,
    out: Box<dyn Write>,
}

impl DumpWriter {
    /// A writer on `out`; the CSV header is written at once.
    pub fn new(format: DumpFormat, mut out: Box<dyn Write>) -> Result<DumpWriter> {
        if format == DumpFormat::Csv {
            out.write_all(b"# key, flag, len, version, expire, data\n")
                .map_err(|e| file_error(None, &e))?;
        }
        Ok(DumpWriter { format, out })
    }

    /// Writes one item.
    pub fn write(&mut self, v: &ValueBlock) -> io::Result<()> {
        let flags = v.flags.to_string();
        let len = v.value.len().to_string();
        let version = v.version.unwrap_or(0).to_string();
        let exptime = v.exptime.unwrap_or(0).to_string();
        match self.format {
            DumpFormat::Default => {
                let o = &mut self.out;
                o.write_all(&v.key)?;
                o.write_all(format!(" {flags} {len} {version} {exptime} '").as_bytes())?;
                o.write_all(&v.value)?;
                o.write_all(b"'\n")
            }
            DumpFormat::Csv => write_csv_row(
                &mut self.out,
                &[
                    &v.key,
                    flags.as_bytes(),
                    len.as_bytes(),
                    version.as_bytes(),
                    exptime.as_bytes(),
                    &v.value,
                ],
            ),
        }
    }

    /// Flushes the output.
    pub fn finish(mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// One CSV row: fields joined by `,`, quoted (with `"` doubled) when they hold `,`, `"`, CR or LF.
fn write_csv_row(out: &mut dyn Write, fields: &[&[u8]]) -> io::Result<()> {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        if f.iter().any(|c| matches!(c, b',' | b'"' | b'\r' | b'\n')) {
            out.write_all(b"\"")?;
            for part in f.split(|&c| c == b'"').enumerate() {
                if part.0 > 0 {
                    out.write_all(b"\"\"")?;
                }
                out.write_all(part.1)?;
            }
            out.write_all(b"\"")?;
        } else {
            out.write_all(f)?;
        }
    }
    out.write_all(b"\n")
}

/// flare-tools' bandwidth syntax (bits per second; `k`/`M`/`G` are binary multiples of bits, `B`/`kB`/`MB`/`GB` of
/// bytes) as the KiB/s the servers take, at least 1 when a limit is given.
pub fn kbps(bw: Option<&str>) -> Result<u64> {
    let Some(bw) = bw else { return Ok(0) };
    let bits = bits_per_sec(bw).ok_or_else(|| {
        AdminError::Usage(format!("bad bandwidth limit {bw:?} (e.g. 800k, 10M, 1MB)"))
    })?;
    Ok(match bits / 8 / 1024 {
        0 if bits > 0 => 1,
        k => k,
    })
}

fn bits_per_sec(bw: &str) -> Option<u64> {
    let digits = bw.find(|c: char| !c.is_ascii_digit()).unwrap_or(bw.len());
    let n: u64 = bw[..digits].parse().ok()?;
    let mult: u64 = match &bw[digits..] {
        "" => 1,
        "B" => 8,
        "k" => 1 << 10,
        "kB" => 8 << 10,
        "M" => 1 << 20,
        "MB" => 8 << 20,
        "G" => 1 << 30,
        "GB" => 8 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn stat_u64(c: &mut Conn, name: &str) -> Option<u64> {
    c.stats(None)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)?
        .1
        .parse()
        .ok()
}

fn output(path: Option<&Path>) -> Result<Box<dyn Write>> {
    match path {
        Some(p) => {
            let f = File::create(p).map_err(|e| file_error(Some(p), &e))?;
            Ok(Box::new(BufWriter::with_capacity(256 * 1024, f)))
        }
        None => Ok(Box::new(BufWriter::new(io::stdout()))),
    }
}

fn input_name(path: Option<&Path>) -> String {
    path.map_or("standard input".into(), |p| p.display().to_string())
}

fn file_error(path: Option<&Path>, e: &io::Error) -> AdminError {
    AdminError::File {
        path: path.map_or("standard output".into(), |p| p.display().to_string()),
        reason: reason(e),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn block(key: &str, flags: u32, value: &[u8]) -> ValueBlock {
        ValueBlock {
            key: Bytes::copy_from_slice(key.as_bytes()),
            flags,
            version: Some(7),
            exptime: Some(0),
            value: Bytes::copy_from_slice(value),
        }
    }

    fn written(format: DumpFormat, blocks: &[ValueBlock]) -> Vec<u8> {
        let buf = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        struct Shared(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.borrow_mut().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = DumpWriter::new(format, Box::new(Shared(buf.clone()))).unwrap();
        for b in blocks {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
        let out = buf.borrow().clone();
        out
    }

    #[test]
    fn default_format_is_flare_tools_and_round_trips_any_bytes() {
        let blocks = [
            block("k1", 3, b"value"),
            block("k2", 0, b"it's\na 'quoted'\r\n line"),
            block("k3", 4294967295, b""),
        ];
        let text = written(DumpFormat::Default, &blocks);
        assert!(text.starts_with(b"k1 3 5 7 0 'value'\nk2 0 "));
        let mut r = DumpReader::new(io::Cursor::new(text.clone()));
        for b in &blocks {
            let e = r.next().unwrap().unwrap();
            assert_eq!(
                (&e.key[..], e.flags, &e.data[..], e.version),
                (&b.key[..], b.flags, &b.value[..], 7)
            );
        }
        assert_eq!(r.next().unwrap(), None);
        assert_eq!(r.position(), text.len() as u64);
    }

    #[test]
    fn bad_files_are_errors_with_an_offset() {
        for bad in [
            &b"k1 0 5 0 0 'abc'\n"[..],
            b"k1 0 x 0 0 'abc'\n",
            b"k1 0 3 0 'abc'\n",
            b"k1 0 3 0 0 abc\n",
            b"k1 0 3 0 0 'abc",
            b"k1 0 99999999999 0 0 'a'\n",
        ] {
            let mut r = DumpReader::new(io::Cursor::new(bad.to_vec()));
            let e = r.next().unwrap_err();
            assert!(e.starts_with("bad item at byte 0"), "{e}");
        }
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let text = written(DumpFormat::Csv, &[block("a,b", 1, b"say \"hi\"")]);
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "# key, flag, len, version, expire, data\n\"a,b\",1,8,7,0,\"say \"\"hi\"\"\"\n"
        );
    }

    #[test]
    fn bandwidth_syntax_is_flare_tools() {
        assert_eq!(kbps(None).unwrap(), 0);
        assert_eq!(kbps(Some("8192")).unwrap(), 1);
        assert_eq!(kbps(Some("1")).unwrap(), 1, "a limit is at least 1 KiB/s");
        assert_eq!(kbps(Some("10M")).unwrap(), 1280);
        assert_eq!(kbps(Some("1MB")).unwrap(), 1024);
        assert_eq!(kbps(Some("64kB")).unwrap(), 64);
        assert!(kbps(Some("fast")).is_err());
        assert!(kbps(Some("10X")).is_err());
    }

    #[test]
    fn key_filters() {
        let f = KeyFilter {
            include: Some(Regex::new("^user:").unwrap()),
            exclude: Some(Regex::new("tmp$").unwrap()),
            prefix: None,
        };
        assert!(f.accepts(b"user:1"));
        assert!(!f.accepts(b"user:1:tmp"));
        assert!(!f.accepts(b"item:1"));
    }
}
