//! Prometheus metrics over HTTP (`metrics-port`, `metrics-address`; off by default).
//!
//! What a scrape shows is read at scrape time from the same atomics and state that `stats` reads, so the two never
//! disagree. The only numbers kept for metrics alone are the requests by command and result and their latency
//! histograms: each connection counts into a plain [`OpTally`] and merges it into the shared [`OpMetrics`] once per
//! read batch, as it does for the `stats` counters, so the hot path touches no shared cache line per request.
//!
//! The exposition format is `prometheus-client`'s: OpenMetrics text when the scraper asks for it (`Accept:
//! application/openmetrics-text`), the classic Prometheus text format otherwise. The HTTP side is `tiny_http` on
//! its own thread, serving `GET /metrics` only.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use flare_core::node::stats::{Metric, MetricKind, Samples, Value};
use flare_core::protocol::meta::{MetaReply, MetaStatus};
use flare_core::protocol::{Command, Reply, StoreMode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Command kinds counted and timed, as the `command` label.
pub const OPS: [&str; 16] = [
    "get",
    "gets",
    "gat",
    "set",
    "add",
    "replace",
    "append",
    "prepend",
    "cas",
    "delete",
    "incr",
    "decr",
    "touch",
    "flush_all",
    "meta",
    "other",
];
const OP_OTHER: usize = OPS.len() - 1;

/// Outcomes, as the `result` label.
pub const RESULTS: [&str; 5] = ["ok", "miss", "not_stored", "exists", "error"];

/// Upper bounds of the latency buckets, in seconds (10 µs to 1 s; slower requests fall in `+Inf`).
pub const LATENCY_BOUNDS: [f64; 16] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];
const BUCKETS: usize = LATENCY_BOUNDS.len() + 1;
const BOUNDS_NS: [u64; 16] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];

/// The `command` label index of a request.
pub fn op_index(command: &Command) -> usize {
    match command {
        Command::Get { cas: false, .. } => 0,
        Command::Get { cas: true, .. } => 1,
        Command::Gat { .. } => 2,
        Command::Store(s) => match s.mode {
            StoreMode::Set => 3,
            StoreMode::Add => 4,
            StoreMode::Replace => 5,
            StoreMode::Append => 6,
            StoreMode::Prepend => 7,
            StoreMode::Cas => 8,
        },
        Command::Delete { .. } => 9,
        Command::Arith {
            op: flare_core::protocol::ArithOp::Incr,
            ..
        } => 10,
        Command::Arith { .. } => 11,
        Command::Touch { .. } => 12,
        Command::FlushAll { .. } => 13,
        Command::Meta(_) => 14,
        _ => OP_OTHER,
    }
}

/// The `result` label index of a reply: a read that found nothing and a write to a missing key are `miss`.
pub fn result_index(reply: &Reply) -> usize {
    match reply {
        Reply::NotFound | Reply::End => 1,
        Reply::Values { items, .. } if items.is_empty() => 1,
        Reply::NotStored => 2,
        Reply::Exists => 3,
        Reply::Error(_) => 4,
        Reply::Meta(m) => meta_result(m),
        _ => 0,
    }
}

fn meta_result(m: &MetaReply) -> usize {
    match m {
        MetaReply::Status { status, .. } => match status {
            MetaStatus::Done => 0,
            MetaStatus::Miss | MetaStatus::NotFound => 1,
            MetaStatus::NotStored => 2,
            MetaStatus::Exists => 3,
        },
        _ => 0,
    }
}

/// One connection's requests since its last merge.
#[derive(Debug, Clone)]
pub struct OpTally {
    counts: [[u64; RESULTS.len()]; OPS.len()],
    buckets: [[u64; BUCKETS]; OPS.len()],
    sum_ns: [u64; OPS.len()],
    /// Bit `i` set: op `i` has something to merge.
    touched: u32,
}

impl Default for OpTally {
    fn default() -> Self {
        OpTally {
            counts: [[0; RESULTS.len()]; OPS.len()],
            buckets: [[0; BUCKETS]; OPS.len()],
            sum_ns: [0; OPS.len()],
            touched: 0,
        }
    }
}

impl OpTally {
    /// Counts one request of kind `op` that ended with `result` after `elapsed`.
    pub fn record(&mut self, op: usize, result: usize, elapsed: Duration) {
        let op = op.min(OP_OTHER);
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NS.partition_point(|&b| b < ns);
        self.counts[op][result.min(RESULTS.len() - 1)] += 1;
        self.buckets[op][bucket] += 1;
        self.sum_ns[op] = self.sum_ns[op].saturating_add(ns);
        self.touched |= 1 << op;
    }
}

/// Requests by command and result, and latency histograms by command, for the whole process.
#[derive(Debug)]
pub struct OpMetrics {
    counts: [[AtomicU64; RESULTS.len()]; OPS.len()],
    buckets: [[AtomicU64; BUCKETS]; OPS.len()],
    sum_ns: [AtomicU64; OPS.len()],
}

impl Default for OpMetrics {
    fn default() -> Self {
        OpMetrics {
            counts: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            buckets: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            sum_ns: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl OpMetrics {
    /// Adds a connection's tally and clears it.
    pub fn merge(&self, t: &mut OpTally) {
        let mut touched = std::mem::take(&mut t.touched);
        while touched != 0 {
            let op = touched.trailing_zeros() as usize;
            touched &= touched - 1;
            for (shared, local) in self.counts[op].iter().zip(t.counts[op].iter_mut()) {
                if *local != 0 {
                    shared.fetch_add(std::mem::take(local), Relaxed);
                }
            }
            for (shared, local) in self.buckets[op].iter().zip(t.buckets[op].iter_mut()) {
                if *local != 0 {
                    shared.fetch_add(std::mem::take(local), Relaxed);
                }
            }
            self.sum_ns[op].fetch_add(std::mem::take(&mut t.sum_ns[op]), Relaxed);
        }
    }

    /// Requests of kind `op` (an index into [`OPS`]) with `result` (into [`RESULTS`]).
    pub fn count(&self, op: usize, result: usize) -> u64 {
        self.counts[op][result].load(Relaxed)
    }

    /// Writes `<prefix>_requests_total{command,result}` and `<prefix>_request_duration_seconds{command}`.
    pub fn encode(&self, prefix: &str, enc: &mut DescriptorEncoder) -> fmt::Result {
        let mut rows = Vec::new();
        for (op, name) in OPS.iter().enumerate() {
            for (r, result) in RESULTS.iter().enumerate() {
                let v = self.count(op, r);
                if v != 0 {
                    rows.push(([("command", *name), ("result", *result)], v));
                }
            }
        }
        counter_family(
            enc,
            &format!("{prefix}_requests"),
            "Requests by command and result",
            &rows,
        )?;
        let name = format!("{prefix}_request_duration_seconds");
        let mut m = enc.encode_descriptor(
            &name,
            "Time from a whole request read to its reply encoded (proxied requests include the hop)",
            None,
            MetricType::Histogram,
        )?;
        for (op, label) in OPS.iter().enumerate() {
            let counts: Vec<u64> = self.buckets[op].iter().map(|b| b.load(Relaxed)).collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(counts)
                .collect();
            let sum = self.sum_ns[op].load(Relaxed) as f64 / 1e9;
            let labels = [("command", *label)];
            m.encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(sum, total, &buckets, None)?;
        }
        Ok(())
    }
}

/// Writes one unlabelled counter (the encoder adds `_total`).
pub fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, u64, u64>(&v, None)
}

/// Writes one unlabelled gauge.
pub fn gauge<V: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: V,
) -> fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

/// Writes a counter with one sample per label set; nothing when `rows` is empty.
pub fn counter_family<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(L, u64)],
) -> fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        m.encode_family(labels)?
            .encode_counter::<NoLabelSet, u64, u64>(v, None)?;
    }
    Ok(())
}

/// Writes a gauge with one sample per label set; nothing when `rows` is empty.
pub fn gauge_family<L: EncodeLabelSet, V: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(L, V)],
) -> fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        m.encode_family(labels)?.encode_gauge(v)?;
    }
    Ok(())
}

/// Writes metrics given as data ([`Metric`]); a labelled one without rows is left out.
pub fn write_metrics(enc: &mut DescriptorEncoder, metrics: &[Metric]) -> fmt::Result {
    for m in metrics {
        let kind = match m.kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
        };
        let rows = match &m.samples {
            Samples::One(v) => {
                write_value(
                    enc.encode_descriptor(&m.name, &m.help, None, kind)?,
                    m.kind,
                    v,
                )?;
                continue;
            }
            Samples::Labelled(rows) if rows.is_empty() => continue,
            Samples::Labelled(rows) => rows,
        };
        let mut family = enc.encode_descriptor(&m.name, &m.help, None, kind)?;
        for (labels, v) in rows {
            write_value(family.encode_family(labels)?, m.kind, v)?;
        }
    }
    Ok(())
}

fn write_value(mut enc: MetricEncoder<'_>, kind: MetricKind, v: &Value) -> fmt::Result {
    match (kind, *v) {
        (MetricKind::Counter, Value::Int(v)) => {
            enc.encode_counter::<NoLabelSet, u64, u64>(&v, None)
        }
        (MetricKind::Counter, Value::Float(v)) => {
            enc.encode_counter::<NoLabelSet, f64, f64>(&v, None)
        }
        (MetricKind::Gauge, Value::Int(v)) => enc.encode_gauge(&v),
        (MetricKind::Gauge, Value::Float(v)) => enc.encode_gauge(&v),
    }
}

/// This process's user and system CPU time.
fn cpu_times() -> (libc::timeval, libc::timeval) {
    // SAFETY: getrusage only writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    (ru.ru_utime, ru.ru_stime)
}

/// `rusage_user` and `rusage_system` as `<sec>.<usec>` (stats.md §1).
pub fn rusage() -> (String, String) {
    let (user, system) = cpu_times();
    let f = |t: libc::timeval| format!("{}.{:06}", t.tv_sec, t.tv_usec);
    (f(user), f(system))
}

/// `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`, `process_start_time_seconds`.
pub fn process(enc: &mut DescriptorEncoder, uptime: Duration) -> fmt::Result {
    let (user, system) = cpu_times();
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = secs(user) + secs(system);
    enc.encode_descriptor(
        "process_cpu_seconds",
        "User and system CPU time spent",
        None,
        MetricType::Counter,
    )?
    .encode_counter::<NoLabelSet, f64, f64>(&cpu, None)?;
    // statm's second field is resident pages.
    if let Some(pages) = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
    {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
        gauge(
            enc,
            "process_resident_memory_bytes",
            "Resident memory size",
            pages * page,
        )?;
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            enc,
            "process_open_fds",
            "Open file descriptors",
            fds.count() as u64,
        )?;
    }
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(uptime);
    gauge(
        enc,
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch",
        start.as_secs(),
    )
}

/// What a scrape renders: writes every metric of the process into the encoder.
pub type Render = dyn Fn(&mut DescriptorEncoder) -> fmt::Result + Send + Sync;

struct RenderCollector(Arc<Render>);

impl fmt::Debug for RenderCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RenderCollector")
    }
}

impl Collector for RenderCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        (self.0)(&mut encoder)
    }
}

/// Content type of the classic Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of the OpenMetrics text format.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders one scrape: `(content type, body)`, OpenMetrics when `openmetrics`, Prometheus text otherwise.
pub fn render(render: &Arc<Render>, openmetrics: bool) -> (&'static str, String) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(RenderCollector(render.clone())));
    let mut body = String::with_capacity(16 * 1024);
    let done = if openmetrics {
        prometheus_client::encoding::text::encode(&mut body, &registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut body, &registry)
    };
    if let Err(e) = done {
        tracing::warn!(error = %e, "metrics encoding failed");
    }
    (
        if openmetrics {
            OPENMETRICS_TEXT
        } else {
            PROMETHEUS_TEXT
        },
        body,
    )
}

/// A running metrics endpoint; stops when dropped.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` and serves `GET /metrics` from `render` on a thread of its own.
    pub fn start(addr: SocketAddr, render: Arc<Render>) -> io::Result<MetricsServer> {
        let server = Arc::new(tiny_http::Server::http(addr).map_err(io::Error::other)?);
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("metrics listener has no IP address"))?;
        let s = server.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve(&s, &render))?;
        Ok(MetricsServer {
            server,
            addr,
            thread: Some(thread),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(server: &tiny_http::Server, render_fn: &Arc<Render>) {
    for request in server.incoming_requests() {
        let path = request.url().split('?').next().unwrap_or("");
        let response = match (request.method(), path) {
            (tiny_http::Method::Get | tiny_http::Method::Head, "/metrics") => {
                let openmetrics = request.headers().iter().any(|h| {
                    h.field.equiv("Accept")
                        && h.value.as_str().contains("application/openmetrics-text")
                });
                let (content_type, body) = render(render_fn, openmetrics);
                text(200, content_type, body)
            }
            (tiny_http::Method::Get | tiny_http::Method::Head, "/") => text(
                200,
                "text/plain; charset=utf-8",
                "flare metrics: GET /metrics\n".into(),
            ),
            (tiny_http::Method::Get | tiny_http::Method::Head, _) => {
                text(404, "text/plain; charset=utf-8", "not found\n".into())
            }
            _ => text(
                405,
                "text/plain; charset=utf-8",
                "method not allowed\n".into(),
            ),
        };
        if let Err(e) = request.respond(response) {
            tracing::debug!(error = %e, "metrics response not sent");
        }
    }
}

fn text(status: u16, content_type: &str, body: String) -> tiny_http::Response<io::Cursor<Vec<u8>>> {
    let header = tiny_http::Header::from_bytes("Content-Type", content_type)
        .expect("a static header is valid");
    tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_lands_in_the_right_bucket_and_merges_once() {
        let mut t = OpTally::default();
        t.record(0, 0, Duration::from_micros(30)); // (25 µs, 50 µs]
        t.record(0, 1, Duration::from_micros(50)); // bounds are inclusive: (25 µs, 50 µs]
        t.record(3, 0, Duration::from_secs(2)); // +Inf
        let m = OpMetrics::default();
        m.merge(&mut t);
        m.merge(&mut t); // the tally was cleared: merging again adds nothing
        assert_eq!(m.count(0, 0), 1);
        assert_eq!(m.count(0, 1), 1);
        assert_eq!(m.count(3, 0), 1);
        assert_eq!(m.buckets[0][2].load(Relaxed), 2);
        assert_eq!(m.buckets[3][BUCKETS - 1].load(Relaxed), 1);
        assert_eq!(m.sum_ns[0].load(Relaxed), 80_000);
    }

    #[test]
    fn render_prints_counters_gauges_and_histograms() {
        let ops = Arc::new(OpMetrics::default());
        let mut t = OpTally::default();
        t.record(0, 0, Duration::from_micros(30));
        t.record(0, 0, Duration::from_millis(3));
        ops.merge(&mut t);
        let o = ops.clone();
        let r: Arc<Render> = Arc::new(move |enc: &mut DescriptorEncoder| {
            gauge(enc, "flare_items", "Items stored", 42u64)?;
            counter(enc, "flare_get_hits", "Keys found", 7)?;
            gauge_family(
                enc,
                "flare_replication_queue",
                "Backlog",
                &[([("slave", "n1:12121")], 3u64)],
            )?;
            o.encode("flare", enc)
        });
        let (ct, body) = render(&r, false);
        assert_eq!(ct, PROMETHEUS_TEXT);
        assert!(body.contains("flare_items 42\n"), "{body}");
        assert!(body.contains("flare_get_hits_total 7\n"), "{body}");
        assert!(
            body.contains("flare_replication_queue{slave=\"n1:12121\"} 3\n"),
            "{body}"
        );
        assert!(
            body.contains("flare_requests_total{command=\"get\",result=\"ok\"} 2\n"),
            "{body}"
        );
        assert!(
            body.contains(
                "flare_request_duration_seconds_bucket{command=\"get\",le=\"5e-05\"} 1\n"
            ),
            "{body}"
        );
        assert!(
            body.contains("flare_request_duration_seconds_bucket{command=\"get\",le=\"+Inf\"} 2\n"),
            "{body}"
        );
        assert!(
            body.contains("flare_request_duration_seconds_count{command=\"get\"} 2\n"),
            "{body}"
        );
        let (ct, body) = render(&r, true);
        assert_eq!(ct, OPENMETRICS_TEXT);
        assert!(body.ends_with("# EOF\n"), "{body}");
    }

    #[test]
    fn the_endpoint_serves_metrics_and_refuses_other_paths() {
        let r: Arc<Render> =
            Arc::new(|enc: &mut DescriptorEncoder| gauge(enc, "flare_up", "Up", 1u64));
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), r).unwrap();
        let get = |path: &str| {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
            write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let ok = get("/metrics");
        assert!(
            ok.starts_with("HTTP/1.0 200") || ok.starts_with("HTTP/1.1 200"),
            "{ok}"
        );
        assert!(ok.contains("flare_up 1\n"), "{ok}");
        let missing = get("/nope");
        assert!(missing.contains(" 404 "), "{missing}");
        drop(server); // stops the thread; must not hang
    }
}
