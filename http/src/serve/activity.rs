//! What one connection is doing, for its timeouts (#14): waiting for a request's
//! head, serving a request, or idle between requests.
//!
//! hyper's own `header_read_timeout` also runs while a keep-alive connection waits for
//! its next request, so it cannot tell a slow head from an idle connection; the phases
//! here can. Three observers write them, all polled inside the connection's task:
//! - [`WatchedIo`] (the socket): the first byte after an idle spell starts a head,
//!   and while idle any byte moved counts as activity (a slow reader still taking the
//!   end of a response is not idle);
//! - [`RouterService`]: hyper calls it once a head is complete, so a request is busy
//!   from there;
//! - [`WatchedBody`] (the response body): when hyper drops it — written out, or the
//!   connection gone — the request is over. A long response such as an event stream
//!   is busy for its whole life, so the idle timeout never cuts it.
//!
//! - [`WatchedRequestBody`] and the socket's writes: while a request is busy, a read
//!   of its body that waits for the client's next bytes, or a write that waits for
//!   the client to make room, is a stall, bounded by the stall timeout. The time a
//!   body's reads wait on the client, added up, may exceed the stall timeout only by
//!   what the minimum body rate allows for the bytes that came, so a body trickling in
//!   with every gap under the stall timeout is cut too (the handler's own time between
//!   reads does not count).
//!
//! Busy has no deadline of its own: a request's own limits bound it (an event stream's
//! max age, a provider call's timeout); only a stall does.

use std::{
    convert::Infallible,
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes, HttpBody},
    http::{Request, Response},
};
use http_body::{Frame, SizeHint};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};
use tower::ServiceExt as _;

/// Which timeout a connection is under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for the rest of a request's head (a new connection starts here).
    Head,
    /// Serving a request, from its complete head to the end of its response.
    Busy,
    /// Between requests on a keep-alive connection.
    Idle,
}

const HEAD: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;

/// The phase of one connection and since when it is in it.
#[derive(Debug)]
pub(super) struct Activity {
    opened: Instant,
    phase: AtomicU8,
    /// When the phase began, in µs after `opened`.
    since_us: AtomicU64,
    /// Requests whose response has not ended (one on HTTP/1.1, where a pipelined
    /// request waits for the one before).
    busy: AtomicUsize,
    /// Since when a write to the socket has waited for room (the client not reading),
    /// in µs after `opened` plus one; 0 when it does not wait.
    write_waits_us: AtomicU64,
    /// Since when a request body's read has waited for the client's next bytes, the
    /// same way.
    body_waits_us: AtomicU64,
    /// How long, in µs, the body's read has waited on the client in its earlier
    /// waits (the current one not counted), and how many bytes of it came so far.
    /// The handler's own time between reads counts for nothing.
    body_waited_us: AtomicU64,
    body_bytes: AtomicU64,
}

impl Activity {
    /// A connection accepted now: waiting for its first request's head.
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            phase: AtomicU8::new(HEAD),
            since_us: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            write_waits_us: AtomicU64::new(0),
            body_waits_us: AtomicU64::new(0),
            body_waited_us: AtomicU64::new(0),
            body_bytes: AtomicU64::new(0),
        })
    }

    /// The current phase.
    pub(super) fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            HEAD => Phase::Head,
            IDLE => Phase::Idle,
            _ => Phase::Busy,
        }
    }

    /// When the current phase began.
    pub(super) fn since(&self) -> Instant {
        self.opened + Duration::from_micros(self.since_us.load(Ordering::Acquire))
    }

    /// Since when the request in flight has waited on the client (for room to write,
    /// or for its body's next bytes), if it does.
    pub(super) fn stalled_since(&self) -> Option<Instant> {
        [&self.write_waits_us, &self.body_waits_us]
            .into_iter()
            .map(|slot| slot.load(Ordering::Acquire))
            .filter(|&us| us > 0)
            .min()
            .map(|us| self.opened + Duration::from_micros(us - 1))
    }

    /// While a request body's read waits on the client: since when this wait runs,
    /// how long its earlier waits took together, and how many bytes came so far.
    pub(super) fn body_read(&self) -> Option<(Instant, Duration, u64)> {
        let us = self.body_waits_us.load(Ordering::Acquire);
        (us > 0).then(|| {
            (
                self.opened + Duration::from_micros(us - 1),
                Duration::from_micros(self.body_waited_us.load(Ordering::Acquire)),
                self.body_bytes.load(Ordering::Acquire),
            )
        })
    }

    /// A poll of the request body: it waits on the client (`pending`), or a wait
    /// ended with `bytes` more (`Some`), or the body ended (`None`, its count reset).
    fn body_polled(&self, pending: bool, bytes: Option<u64>) {
        if pending {
            self.waits(&self.body_waits_us, true);
            return;
        }
        let started = self.body_waits_us.swap(0, Ordering::AcqRel);
        if started > 0 {
            let now = u64::try_from(self.opened.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.body_waited_us
                .fetch_add(now.saturating_sub(started - 1), Ordering::AcqRel);
        }
        match bytes {
            Some(n) => {
                self.body_bytes.fetch_add(n, Ordering::AcqRel);
            }
            None => {
                self.body_waited_us.store(0, Ordering::Release);
                self.body_bytes.store(0, Ordering::Release);
            }
        }
    }

    /// Records in `slot` whether the server now waits on the client (kept from the
    /// first of a run of waits).
    fn waits(&self, slot: &AtomicU64, waiting: bool) {
        if !waiting {
            slot.store(0, Ordering::Release);
        } else if slot.load(Ordering::Acquire) == 0 {
            let elapsed = u64::try_from(self.opened.elapsed().as_micros()).unwrap_or(u64::MAX);
            slot.store(elapsed.saturating_add(1), Ordering::Release);
        }
    }

    fn enter(&self, phase: u8) {
        let elapsed = u64::try_from(self.opened.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.since_us.store(elapsed, Ordering::Release);
        self.phase.store(phase, Ordering::Release);
    }

    /// Bytes moved on the socket (`read` tells which way).
    fn saw_bytes(&self, read: bool) {
        if self.phase.load(Ordering::Acquire) == IDLE {
            self.enter(if read { HEAD } else { IDLE });
        }
    }

    /// A request's head is complete; busy until the guard drops.
    fn begin_request(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.phase.store(BUSY, Ordering::Release);
        BusyGuard(self.clone())
    }

    fn end_request(&self) {
        if self.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.waits(&self.write_waits_us, false);
            self.waits(&self.body_waits_us, false);
            self.enter(IDLE);
        }
    }
}

/// A request in flight; its drop ends it.
#[derive(Debug)]
struct BusyGuard(Arc<Activity>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

// === impl WatchedIo ===

/// The connection's socket, telling [`Activity`] when bytes move.
#[derive(Debug)]
pub(super) struct WatchedIo<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> WatchedIo<T> {
    /// `inner`, reporting to `activity`.
    pub(super) fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.saw_bytes(true);
        }
        polled
    }
}

impl<T> WatchedIo<T> {
    /// A write polled: bytes moved, or it waits for the client to make room.
    fn wrote(&self, polled: &Poll<io::Result<usize>>) {
        self.activity
            .waits(&self.activity.write_waits_us, polled.is_pending());
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) {
            self.activity.saw_bytes(false);
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// === impl RouterService ===

/// The router as hyper's service for one connection: each request is busy from its
/// call to the end of its response body.
#[derive(Debug, Clone)]
pub(super) struct RouterService {
    app: Router,
    activity: Arc<Activity>,
}

impl RouterService {
    /// `app`, serving the connection `activity` belongs to.
    pub(super) fn new(app: Router, activity: Arc<Activity>) -> Self {
        Self { app, activity }
    }
}

impl hyper::service::Service<Request<hyper::body::Incoming>> for RouterService {
    type Response = Response<WatchedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<hyper::body::Incoming>) -> Self::Future {
        let busy = self.activity.begin_request();
        let activity = self.activity.clone();
        let request = request.map(|body| Body::new(WatchedRequestBody { body, activity }));
        let response = self.app.clone().oneshot(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| WatchedBody { body, _busy: busy }))
        })
    }
}

// === impl WatchedRequestBody ===

/// A request body that tells [`Activity`] while its read waits on the client.
#[derive(Debug)]
struct WatchedRequestBody {
    body: hyper::body::Incoming,
    activity: Arc<Activity>,
}

impl Drop for WatchedRequestBody {
    fn drop(&mut self) {
        // A handler that gave up on its body waits on the client no more.
        self.activity.body_polled(false, None);
    }
}

impl HttpBody for WatchedRequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Pending => self.activity.body_polled(true, Some(0)),
            Poll::Ready(Some(Ok(frame))) => {
                let bytes = frame.data_ref().map_or(0, |d| d.len() as u64);
                self.activity.body_polled(false, Some(bytes));
            }
            Poll::Ready(None | Some(Err(_))) => self.activity.body_polled(false, None),
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

// === impl WatchedBody ===

/// A response body that ends its request when hyper drops it.
#[derive(Debug)]
pub(super) struct WatchedBody {
    body: Body,
    _busy: BusyGuard,
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_write_the_client_does_not_take_is_a_stall_until_it_moves() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let activity = Activity::new();
        let (server, mut client) = tokio::io::duplex(64);
        let mut io = WatchedIo::new(server, activity.clone());
        let _busy = activity.begin_request();
        io.write_all(&[0u8; 64]).await.unwrap();
        assert_eq!(activity.stalled_since(), None, "room to write");
        let blocked =
            tokio::time::timeout(Duration::from_millis(10), io.write_all(&[1u8; 8])).await;
        assert!(blocked.is_err(), "the pipe is full");
        let since = activity
            .stalled_since()
            .expect("a write waits on the client");
        tokio::time::advance(Duration::from_millis(5)).await;
        assert_eq!(
            activity.stalled_since(),
            Some(since),
            "kept from the first wait"
        );
        let mut taken = [0u8; 64];
        client.read_exact(&mut taken).await.unwrap();
        io.write_all(&[1u8; 8]).await.unwrap();
        assert_eq!(activity.stalled_since(), None, "the client took it");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_is_busy_until_its_response_ends_then_idle_until_a_byte() {
        let activity = Activity::new();
        assert_eq!(activity.phase(), Phase::Head);
        let busy = activity.begin_request();
        activity.saw_bytes(true);
        assert_eq!(
            activity.phase(),
            Phase::Busy,
            "a request body is not a head"
        );
        tokio::time::advance(Duration::from_millis(5)).await;
        drop(busy);
        assert_eq!(activity.phase(), Phase::Idle);
        let idle_since = activity.since();
        assert_eq!(idle_since - activity.opened, Duration::from_millis(5));
        tokio::time::advance(Duration::from_millis(5)).await;
        activity.saw_bytes(false);
        assert_eq!(activity.phase(), Phase::Idle, "writing out a response tail");
        assert!(activity.since() > idle_since);
        activity.saw_bytes(true);
        assert_eq!(activity.phase(), Phase::Head);
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_bodys_waits_on_the_client_count_not_the_handlers_own_time() {
        let activity = Activity::new();
        let _busy = activity.begin_request();
        activity.body_polled(true, Some(0));
        tokio::time::advance(Duration::from_millis(100)).await;
        activity.body_polled(false, Some(10));
        assert_eq!(activity.body_read(), None, "not waiting now");
        // The handler works for a minute between reads (stores an upload, say).
        tokio::time::advance(Duration::from_secs(60)).await;
        activity.body_polled(true, Some(0));
        let (since, waited, bytes) = activity.body_read().expect("waiting again");
        assert_eq!(since, Instant::now());
        assert_eq!(waited, Duration::from_millis(100));
        assert_eq!(bytes, 10);
        // The end of the body resets the count.
        activity.body_polled(false, None);
        activity.body_polled(true, Some(0));
        assert_eq!(
            activity.body_read().map(|(_, w, b)| (w, b)),
            Some((Duration::ZERO, 0))
        );
    }
}
