//! How many connections may be open: in all, and from one client (#14).
//!
//! The accept loop asks [`Limits::admit`] before it serves a connection; the
//! [`Permit`] it gets back is held by the connection's task and gives the slot back
//! when the task ends, however it ends. A client is its IPv4 address, or the /64 of
//! its IPv6 address: one IPv6 subscriber usually holds a whole /64, so counting single
//! addresses would give it 2^64 allowances.
//!
//! One lock guards both counts, so a connection is counted in both or in neither; it
//! is taken once per accepted connection and once per closed one, never per request.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    sync::{Arc, Mutex, PoisonError},
};

/// The open connections, in all and per client.
#[derive(Debug)]
pub(super) struct Limits {
    max_connections: usize,
    max_connections_per_ip: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// Why a connection was not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// `http.max_connections` are open.
    Total,
    /// `http.max_connections_per_ip` are open from this client.
    PerClient,
}

impl Refusal {
    /// The `reason` label of `switchyard_http_connections_refused_total`.
    pub(super) fn reason(self) -> &'static str {
        match self {
            Self::Total => "max_connections",
            Self::PerClient => "max_connections_per_ip",
        }
    }
}

impl Limits {
    /// At most `max_connections` open connections, `max_connections_per_ip` of them
    /// from one client.
    pub(super) fn new(max_connections: usize, max_connections_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            max_connections,
            max_connections_per_ip,
            open: Mutex::default(),
        })
    }

    /// A slot for a connection from `peer`, or why there is none.
    pub(super) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Permit, Refusal> {
        let client = client_of(peer);
        let mut open = self.lock();
        if open.total >= self.max_connections {
            return Err(Refusal::Total);
        }
        let from_client = open.per_client.entry(client).or_insert(0);
        if *from_client >= self.max_connections_per_ip {
            return Err(Refusal::PerClient);
        }
        *from_client += 1;
        open.total += 1;
        drop(open);
        metrics::gauge!("switchyard_http_connections_open").increment(1.0);
        Ok(Permit {
            limits: self.clone(),
            client,
        })
    }

    /// How many connections are open (tests).
    #[cfg(test)]
    fn open(&self) -> (usize, usize) {
        let open = self.lock();
        (open.total, open.per_client.len())
    }

    fn release(&self, client: IpAddr) {
        let mut open = self.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(from_client) = open.per_client.get_mut(&client) {
            *from_client = from_client.saturating_sub(1);
            if *from_client == 0 {
                open.per_client.remove(&client);
            }
        }
        drop(open);
        metrics::gauge!("switchyard_http_connections_open").decrement(1.0);
    }

    /// The counts are plain integers, consistent after any panic elsewhere.
    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One open connection's slot, given back on drop.
#[derive(Debug)]
pub(super) struct Permit {
    limits: Arc<Limits>,
    client: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limits.release(self.client);
    }
}

/// The client a peer address counts against: an IPv4 address (also one mapped into
/// IPv6), or the /64 an IPv6 address is in.
fn client_of(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = v6.to_bits() & !u128::from(u64::MAX);
            IpAddr::V6(Ipv6Addr::from_bits(prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_client_gets_at_most_its_share_and_the_slot_comes_back() {
        let limits = Limits::new(10, 2);
        let first = limits.admit(ip("10.0.0.1")).unwrap();
        let _second = limits.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            limits.admit(ip("10.0.0.1")).unwrap_err(),
            Refusal::PerClient
        );
        let _other = limits.admit(ip("10.0.0.2")).unwrap();
        drop(first);
        let _again = limits.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(limits.open(), (3, 2));
    }

    #[test]
    fn the_total_caps_every_client_together() {
        let limits = Limits::new(2, 5);
        let a = limits.admit(ip("10.0.0.1")).unwrap();
        let b = limits.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(limits.admit(ip("10.0.0.3")).unwrap_err(), Refusal::Total);
        drop((a, b));
        assert_eq!(limits.open(), (0, 0), "no entry is left behind");
        assert!(limits.admit(ip("10.0.0.3")).is_ok());
    }

    #[test]
    fn an_ipv6_client_is_its_64_and_a_mapped_ipv4_is_the_ipv4() {
        let limits = Limits::new(10, 1);
        let _a = limits.admit(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            limits.admit(ip("2001:db8:1:2:ffff::9")).unwrap_err(),
            Refusal::PerClient
        );
        assert!(limits.admit(ip("2001:db8:1:3::1")).is_ok());
        let _v4 = limits.admit(ip("192.0.2.7")).unwrap();
        assert_eq!(
            limits.admit(ip("::ffff:192.0.2.7")).unwrap_err(),
            Refusal::PerClient
        );
    }
}
