//! The accept loop: serving the router on a listener with connection limits and
//! timeouts (#14), and a graceful drain at shutdown.
//!
//! `axum::serve` has no header-read or idle timeout and no connection limit: 1,000
//! connections that never finished their headers were all still open after 35 s. Here
//! each accepted connection must first get a slot under `max_connections` and
//! `max_connections_per_ip` (`limits`); one that gets none is closed at once, unread,
//! and counted. Each served connection runs in a task of this loop's own [`Tasks`]
//! (`connection`), under a header-read timeout and an idle timeout (`activity` tells
//! which applies).
//!
//! Hazards:
//! - An accept error must neither end the server nor spin: errors of one connection
//!   (reset before it was accepted) are skipped, others (out of file descriptors) back
//!   off, 10 ms doubling to 1 s, and the loop goes on.
//! - Nothing here logs per connection above debug: a flood would flood the log. The
//!   metrics count instead.
//! - Only HTTP/1.1 is served, as with `axum::serve` on axum's `http1` feature before:
//!   no h2c, no upgrades (no route uses one, and an upgraded socket would outlive its
//!   connection's slot).

mod activity;
mod connection;
mod limits;

use std::{future::Future, io, pin::pin, time::Duration};

use axum::Router;
use switchyard_tasks::Tasks;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use connection::Timeouts;
use limits::Limits;

/// How connections are bounded (the `[http]` settings of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionPolicy {
    /// The longest a client may take to send a request's head (request line and
    /// headers): from the connection's start, or from the first byte after an idle
    /// spell. Stops slow-header (slowloris) connections.
    pub header_read_timeout: Duration,
    /// The longest a keep-alive connection may sit between a response's end and the
    /// next request's first byte.
    pub idle_timeout: Duration,
    /// The longest the server waits on the client in the middle of a request: for the
    /// next bytes of a body it reads, or for room to write its response. Stops slow
    /// bodies and clients that stopped reading.
    pub stall_timeout: Duration,
    /// The slowest average rate, in bytes a second, a request body may come in at once
    /// it has been read for `stall_timeout`; a slower one is cut (every gap under the
    /// stall timeout is not enough: a body could trickle in for ever).
    pub min_body_rate: u64,
    /// Connections open at once in this process; more are closed at once.
    pub max_connections: usize,
    /// Connections open at once from one client (an IPv4 address or an IPv6 /64).
    pub max_connections_per_ip: usize,
    /// At shutdown, how long the requests in flight may take to finish; then the
    /// connections still busy are cut.
    pub drain_grace: Duration,
}

impl Default for ConnectionPolicy {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(30),
            min_body_rate: 4096,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            drain_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` under `policy` until `shutdown` resolves; then stops
/// accepting, closes connections with nothing in flight, and waits up to
/// `policy.drain_grace` for the requests in flight to finish; the rest are cut.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    policy: ConnectionPolicy,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let limits = Limits::new(policy.max_connections, policy.max_connections_per_ip);
    let timeouts = Timeouts {
        header_read: policy.header_read_timeout,
        idle: policy.idle_timeout,
        stall: policy.stall_timeout,
        min_body_rate: policy.min_body_rate.max(1),
    };
    let connections = Tasks::new("http");
    // Dropped before the drain ends (its owner stopped), the connections stop too.
    let _stop_connections = CancelOnDrop(connections.clone());
    let draining = CancellationToken::new();
    let mut backoff = Backoff::default();
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff.reset();
                accepted
            }
            Err(e) if is_per_connection(&e) => {
                tracing::debug!(error = %e, "http accept: connection lost before accepted");
                continue;
            }
            Err(e) => {
                let pause = backoff.next(&e);
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        match limits.admit(peer.ip()) {
            Ok(permit) => connections.spawn(
                "http connection",
                connection::serve(stream, app.clone(), timeouts, draining.clone(), permit),
            ),
            Err(refusal) => {
                let reason = refusal.reason();
                tracing::debug!(%peer, reason, "http connection refused");
                metrics::counter!("switchyard_http_connections_refused_total", "reason" => reason)
                    .increment(1);
                drop(stream);
            }
        }
    }
    drop(listener);
    draining.cancel();
    // A client that stopped reading (or a long event stream) must not hold the
    // process up: after the grace, the connections still busy are cut (on return,
    // `_stop_connections` cancels them).
    if tokio::time::timeout(policy.drain_grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = policy.drain_grace.as_millis(),
            "http connections still busy after the drain's grace; cut"
        );
    }
}

/// Cancels the connections' tasks when dropped.
struct CancelOnDrop(Tasks);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Errors that concern one connection only (it was reset while queued), not the
/// listener: skipped without a pause.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// The pause after an accept error: 10 ms doubling to 1 s while errors continue, back
/// to the start after an accepted connection.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MOST: Duration = Duration::from_secs(1);

    /// Notes `error` and answers how long to pause. The first of a run is logged at
    /// warn (running out of file descriptors needs an operator), the rest at debug.
    fn next(&mut self, error: &io::Error) -> Duration {
        if self.failures == 0 {
            tracing::warn!(error = %error, "http accept failed; pausing and retrying");
        } else {
            tracing::debug!(error = %error, failures = self.failures, "http accept failed again");
        }
        metrics::counter!("switchyard_http_accept_errors_total").increment(1);
        let pause = Self::FIRST
            .saturating_mul(2u32.saturating_pow(self.failures))
            .min(Self::MOST);
        self.failures = self.failures.saturating_add(1);
        pause
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_back_off_to_a_second_and_start_over_after_a_success() {
        let mut backoff = Backoff::default();
        let error = io::Error::from_raw_os_error(24); // EMFILE
        let pauses: Vec<_> = (0..10).map(|_| backoff.next(&error)).collect();
        assert_eq!(pauses[0], Duration::from_millis(10));
        assert_eq!(pauses[1], Duration::from_millis(20));
        assert_eq!(pauses[9], Duration::from_secs(1));
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        backoff.reset();
        assert_eq!(backoff.next(&error), Duration::from_millis(10));
        assert!(!is_per_connection(&error));
        assert!(is_per_connection(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
    }
}
