//! One accepted connection, served by hyper (HTTP/1.1) until the client closes it, a
//! timeout closes it, or the server drains it (#14).
//!
//! The connection's future and its deadline are polled together in one `poll_fn`, in
//! the connection's own task: every phase change (see `activity`) happens while hyper
//! is polled, so the deadline is recomputed right after, and a timer is armed only
//! while the connection waits for a head, sits idle, or waits on the client within a
//! request. Closing on a timeout drops the connection; within a request that cancels
//! its handler, which is safe: a handler stores nothing before it has read its body,
//! and a synchronous call runs in a task of its own.

use std::{
    future::{Future, poll_fn},
    pin::pin,
    sync::Arc,
    task::Poll,
    time::Duration,
};

use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::{
    activity::{Activity, Phase, RouterService, WatchedIo},
    limits::Permit,
};

/// The timeouts of a connection: two without a request in flight, one within.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// From a connection's start, or the first byte after an idle spell, to the end of
    /// the request's head.
    pub(super) header_read: Duration,
    /// From the end of a response to the next request's first byte.
    pub(super) idle: Duration,
    /// In a request, while the server waits on the client (a body's next bytes, room
    /// to write).
    pub(super) stall: Duration,
    /// The slowest average rate (bytes a second) of a request body read for longer
    /// than `stall`.
    pub(super) min_body_rate: u64,
}

/// How a connection ended.
#[derive(Debug)]
enum Ended {
    /// hyper finished it: the client closed, or asked to (`Connection: close`), or the
    /// connection failed.
    Served(Result<(), hyper::Error>),
    /// No complete head within the header-read timeout.
    HeadTimedOut,
    /// No new request within the idle timeout.
    IdleTimedOut,
    /// A request in flight waited on the client longer than the stall timeout.
    Stalled,
    /// A request body came in slower than the minimum average rate.
    SlowBody,
    /// The server is draining and nothing was in flight.
    Drained,
}

/// Serves `stream` with `app` until it ends; `draining` asks it to finish its request
/// in flight and close. `permit` is its slot under the connection limits.
pub(super) async fn serve(
    stream: TcpStream,
    app: Router,
    timeouts: Timeouts,
    draining: CancellationToken,
    permit: Permit,
) {
    let activity = Activity::new();
    let io = TokioIo::new(WatchedIo::new(stream, activity.clone()));
    let service = RouterService::new(app, activity.clone());
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The timeouts are ours (module doc): hyper's own one needs no timer then.
    builder.header_read_timeout(None);
    let mut connection = pin!(builder.serve_connection(io, service));
    let mut drain = pin!(draining.cancelled_owned());
    let mut draining_started = false;
    let mut timer = pin!(tokio::time::sleep_until(activity.since()));

    let ended = poll_fn(|cx| {
        loop {
            if let Poll::Ready(result) = connection.as_mut().poll(cx) {
                return Poll::Ready(Ended::Served(result));
            }
            if !draining_started && drain.as_mut().poll(cx).is_ready() {
                draining_started = true;
                if activity.phase() != Phase::Busy {
                    return Poll::Ready(Ended::Drained);
                }
                // Finish the response in flight, then close; hyper needs a poll to act.
                connection.as_mut().graceful_shutdown();
                continue;
            }
            return match deadline(&activity, timeouts) {
                None => Poll::Pending,
                Some((at, ended)) => {
                    if timer.deadline() != at {
                        timer.as_mut().reset(at);
                    }
                    match timer.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(ended),
                        Poll::Pending => Poll::Pending,
                    }
                }
            };
        }
    })
    .await;
    match ended {
        Ended::Served(Ok(())) | Ended::Drained => {}
        Ended::Served(Err(e)) => tracing::debug!(error = %e, "http connection failed"),
        Ended::HeadTimedOut => closed_on_timeout("header_read"),
        Ended::IdleTimedOut => closed_on_timeout("idle"),
        Ended::Stalled => closed_on_timeout("stall"),
        Ended::SlowBody => closed_on_timeout("slow_body"),
    }
    drop(permit);
}

/// When the connection closes unless something happens first, and why.
fn deadline(activity: &Arc<Activity>, timeouts: Timeouts) -> Option<(tokio::time::Instant, Ended)> {
    match activity.phase() {
        Phase::Busy => {
            let stalled = activity
                .stalled_since()
                .map(|since| (since + timeouts.stall, Ended::Stalled));
            // The body's waits on the client, added up, may take `stall` plus what
            // `min_body_rate` allows for the bytes that came.
            let slow = activity.body_read().map(|(waiting_since, waited, bytes)| {
                let allowed = timeouts.stall
                    + Duration::from_secs_f64(bytes as f64 / timeouts.min_body_rate as f64);
                (
                    waiting_since + allowed.saturating_sub(waited),
                    Ended::SlowBody,
                )
            });
            [stalled, slow]
                .into_iter()
                .flatten()
                .min_by_key(|(at, _)| *at)
        }
        Phase::Head => Some((activity.since() + timeouts.header_read, Ended::HeadTimedOut)),
        Phase::Idle => Some((activity.since() + timeouts.idle, Ended::IdleTimedOut)),
    }
}

/// Counts a connection closed by a timeout (a flood of them is the point, so this
/// never logs above debug).
fn closed_on_timeout(timeout: &'static str) {
    tracing::debug!(timeout, "http connection closed by its timeout");
    metrics::counter!("switchyard_http_connections_timed_out_total", "timeout" => timeout)
        .increment(1);
}
