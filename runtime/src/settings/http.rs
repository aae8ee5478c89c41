//! `[http]`: where the HTTP API listens, the address clients reach it at, and how its
//! connections are bounded (#14: a header-read and an idle timeout, a limit in all and
//! per client).

use std::net::SocketAddr;

use serde::Deserialize;
use switchyard_core::FieldError;

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Listen address.
    pub listen: String,
    /// The address clients reach this service at (`https://switchyard.example.com`):
    /// the base of the artifact URLs in events. Unset, those are relative paths.
    pub public_url: Option<String>,
    /// The longest a client may take to send a request's head (request line and
    /// headers), from the connection's start or from its first byte after an idle
    /// spell, in ms; then the connection is closed. Stops slow-header clients.
    pub header_read_timeout_ms: u64,
    /// The longest a keep-alive connection may sit without a request between a
    /// response's end and the next request, in ms. A response being sent (an event
    /// stream) is not idle.
    pub idle_timeout_ms: u64,
    /// The longest the server waits on a client in the middle of a request, in ms: for
    /// the next bytes of a request body it reads, or for room to write the response
    /// (a client that stopped reading); then the connection is closed. A handler's own
    /// wait (a provider call, an event stream between events) is not a stall.
    pub stall_timeout_ms: u64,
    /// The slowest a request body may come in on average, in bytes a second, once it
    /// has been read for `stall_timeout_ms`; a slower one is cut (a body trickling in
    /// with every gap under the stall timeout would otherwise be read for ever).
    pub min_body_rate: u64,
    /// Connections open at once in this process; a connection beyond them is closed at
    /// once, unread. Keep it below the process's file-descriptor limit.
    pub max_connections: usize,
    /// Connections open at once from one client (an IPv4 address, or an IPv6 /64).
    /// Behind a proxy every connection comes from the proxy: raise it to
    /// `max_connections` there.
    pub max_connections_per_ip: usize,
    /// At shutdown, how long the requests in flight may take to finish, in ms; the
    /// connections still busy then (a client that stopped reading, a long event
    /// stream) are cut, so one client cannot hold the process up.
    pub drain_grace_ms: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            public_url: None,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            stall_timeout_ms: 30_000,
            min_body_rate: 4096,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            drain_grace_ms: 10_000,
        }
    }
}

impl HttpSettings {
    /// The problems of these settings, each naming its key.
    pub(super) fn check(&self, errors: &mut Vec<FieldError>) {
        if self.listen.parse::<SocketAddr>().is_err() {
            errors.push(FieldError::new(
                "http.listen",
                format!("'{}' is not an address like 127.0.0.1:8080", self.listen),
            ));
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            errors.push(FieldError::new(
                "http.public_url",
                format!("'{url}' must be an http:// or https:// URL"),
            ));
        }
        for (key, value) in [
            ("http.header_read_timeout_ms", self.header_read_timeout_ms),
            ("http.idle_timeout_ms", self.idle_timeout_ms),
            ("http.stall_timeout_ms", self.stall_timeout_ms),
            ("http.min_body_rate", self.min_body_rate),
            ("http.drain_grace_ms", self.drain_grace_ms),
            ("http.max_connections", self.max_connections as u64),
            (
                "http.max_connections_per_ip",
                self.max_connections_per_ip as u64,
            ),
        ] {
            if value == 0 {
                errors.push(FieldError::new(key, "must be > 0"));
            }
        }
    }
}
