//! Production drivers of Flare on tokio: the node server (generic over [`net::Net`] so the simulation runs the
//! same code on turmoil), the RocksDB engine, configuration loading, process plumbing (pid file, daemon mode,
//! logging), and [`util`], the async helpers they share.
pub mod admin;
pub mod cli;
pub mod daemon;
pub mod index;
pub mod index_store;
pub mod metrics;
pub mod net;
pub mod node;
pub mod rocks;

/// Small async helpers the drivers share, with nothing of Flare in them.
pub mod util {
    use std::future::Future;
    use std::io;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    use tokio::sync::{watch, Notify};

    /// Runs every future to completion, concurrently, in the current task (no spawning, so no hand-off to another
    /// thread); the outputs come back in order.
    pub async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
        let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
        let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
                if slot.is_none() {
                    match f.as_mut().poll(cx) {
                        std::task::Poll::Ready(v) => *slot = Some(v),
                        std::task::Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        out.into_iter()
            .map(|v| v.expect("invariant: every future completed before poll_fn returned Ready"))
            .collect()
    }

    /// Whether an idle connection is still open: nothing may be readable on it, so a readable end of stream (or stray
    /// bytes, or an error) means the peer closed it or the stream is out of step. Polls once without waiting.
    pub fn still_open<T: tokio::io::AsyncRead + Unpin>(stream: &mut T) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut byte = [0u8; 1];
        let mut buf = tokio::io::ReadBuf::new(&mut byte);
        std::pin::Pin::new(stream)
            .poll_read(&mut cx, &mut buf)
            .is_pending()
    }

    /// Batches fsyncs: writers take a ticket and wait; one syncer fsyncs whenever they do and releases every ticket
    /// issued before its fsync began.
    #[derive(Debug)]
    pub struct GroupCommit {
        issued: AtomicU64,
        wake: Notify,
        synced: watch::Sender<u64>,
    }

    impl Default for GroupCommit {
        fn default() -> Self {
            GroupCommit {
                issued: AtomicU64::new(0),
                wake: Notify::new(),
                synced: watch::channel(0).0,
            }
        }
    }

    impl GroupCommit {
        /// Waits until an fsync that began after this call has finished; fails once the syncer has stopped.
        pub async fn wait(&self) -> io::Result<()> {
            let ticket = self.issued.fetch_add(1, Relaxed) + 1;
            let mut synced = self.synced.subscribe();
            self.wake.notify_one();
            synced
                .wait_for(|s| *s >= ticket)
                .await
                .map(|_| ())
                .map_err(|_| io::Error::other("group commit stopped after a WAL fsync failure"))
        }

        /// The syncer: runs `sync` whenever writers wait and releases their tickets; returns when `sync` fails
        /// (answers false). Tickets are released by nobody after that.
        pub async fn run<F: Future<Output = bool>>(&self, mut sync: impl FnMut() -> F) {
            loop {
                self.wake.notified().await;
                loop {
                    let target = self.issued.load(Relaxed);
                    if target <= *self.synced.borrow() {
                        break;
                    }
                    if !sync().await {
                        return;
                    }
                    let _ = self.synced.send(target);
                }
            }
        }
    }
}
