//! The outbound-fetch guard. Every fetch of a URL that did not come from the operator's
//! own config goes through one [`Guard`]: input images of `image.edit`, result URLs a
//! provider returns on another host than its configured endpoint, and the plugin host's
//! HTTP. A guarded fetch:
//!
//! - accepts `http` and `https` only;
//! - resolves the host once, in the guard's own resolver, and refuses every address
//!   that is loopback, private, link-local, unique-local, CGNAT, multicast, unspecified
//!   or reserved — also when it is spelled as an IPv4-mapped, IPv4-compatible, 6to4 or
//!   NAT64 IPv6 address ([`refusal`]); an IP literal in the URL is checked the same way;
//! - connects to the checked addresses themselves (the HTTP client asks the guard's
//!   resolver, so the name is never resolved a second time: no DNS rebinding);
//! - follows no redirect (a 3xx is an answer);
//! - is bounded: a total timeout, a byte budget per fetch and per command
//!   ([`Budget`]), and a cap on fetches at once.
//!
//! The operator can allow hosts or networks ([`OutboundPolicy::allow`]), for an internal
//! image store, say. A refusal is decided before any connection, so it tells a tenant
//! nothing about what listens inside.

mod address;
mod fetch;
mod policy;
mod resolver;

pub use address::refusal;
pub use fetch::{Budget, FetchError, Fetched, Guard};
pub use policy::{AllowEntry, OutboundPolicy, PolicyError};
