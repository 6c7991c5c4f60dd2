//! Streams a `dump` or `dump_key` reply: walks the store in key order with a cursor (so several dumps can run at
//! once, and writes go on meanwhile), lets `core` frame, filter and throttle each record, and writes in chunks.

use std::io;
use std::sync::atomic::Ordering::Relaxed;

use bytes::{Bytes, BytesMut};
use flare_core::dump::{encode_record, DumpKind, Throttle};
use flare_core::node::wire;
use flare_core::protocol::{lines, DumpArgs};
use flare_core::storage::Storage;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::Shared;
use crate::net::Net;

/// Records read from the store per step.
const BATCH: usize = 256;
/// Bytes buffered before a write (unthrottled dumps).
const CHUNK: usize = 256 * 1024;

/// Writes the whole dump of `kind` to `out`, ending with `END` (or a `SERVER_ERROR` when the store fails).
pub(super) async fn stream<N: Net, S: Storage, W: AsyncWrite + Unpin>(
    shared: &Shared<N, S>,
    kind: DumpKind,
    args: DumpArgs,
    out: &mut W,
) -> io::Result<()> {
    shared.counters.dumps_running.fetch_add(1, Relaxed);
    let result = stream_records(shared, kind, args, out).await;
    shared.counters.dumps_running.fetch_sub(1, Relaxed);
    result
}

async fn stream_records<N: Net, S: Storage, W: AsyncWrite + Unpin>(
    shared: &Shared<N, S>,
    kind: DumpKind,
    args: DumpArgs,
    out: &mut W,
) -> io::Result<()> {
    let mut throttle = Throttle::new(&args);
    let mut buf = BytesMut::with_capacity(CHUNK + 64 * 1024);
    let mut cursor: Option<Bytes> = None;
    let view = shared.cluster.view();
    let mut sent = 0u64;
    loop {
        let batch = match shared.store.storage().scan(cursor.as_deref(), BATCH) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "dump: storage scan failed");
                buf.extend_from_slice(wire::dump_failed(kind));
                return write(shared, out, &mut buf).await;
            }
        };
        let Some((last, _)) = batch.last() else { break };
        cursor = Some(last.clone());
        let now = shared.now();
        for (key, entry) in &batch {
            let before = buf.len();
            if !encode_record(kind, &args, view.resolver(), key, entry, now, &mut buf) {
                continue;
            }
            sent += 1;
            let pause =
                throttle.on_record(buf.len() - before, tokio::time::Instant::now().into_std());
            if !pause.is_zero() {
                write(shared, out, &mut buf).await?;
                tokio::time::sleep(pause).await;
            } else if buf.len() >= CHUNK {
                write(shared, out, &mut buf).await?;
            }
        }
        shared
            .counters
            .dump_items
            .fetch_add(std::mem::take(&mut sent), Relaxed);
        if throttle.is_unlimited() {
            // Let other connections run between batches of a long dump.
            tokio::task::yield_now().await;
        }
    }
    lines::put_end(&mut buf);
    write(shared, out, &mut buf).await
}

async fn write<N: Net, S: Storage, W: AsyncWrite + Unpin>(
    shared: &Shared<N, S>,
    out: &mut W,
    buf: &mut BytesMut,
) -> io::Result<()> {
    out.write_all(buf).await?;
    shared
        .counters
        .bytes_written
        .fetch_add(buf.len() as u64, Relaxed);
    buf.clear();
    Ok(())
}
