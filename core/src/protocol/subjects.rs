//! NATS subjects and stream names, built only here from `bus.prefix` (PROTOCOL.md §1).

use crate::{
    ids::{RequestId, Tenant},
    kind::Kind,
    protocol::event::EventType,
};

/// Every subject and stream name, derived from one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Self::new("switchyard")
    }
}

impl Subjects {
    /// Subjects under `prefix` (default `switchyard`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>.cmd.<kind>`.
    pub fn command(&self, kind: Kind) -> String {
        format!("{}.cmd.{}", self.prefix, kind.as_str())
    }

    /// `<prefix>.cmd.>`: every command.
    pub fn all_commands(&self) -> String {
        format!("{}.cmd.>", self.prefix)
    }

    /// The kind named by a command subject, if it is one of ours.
    pub fn kind_of_command_subject(&self, subject: &str) -> Option<Result<Kind, String>> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix(".cmd.")?;
        Some(rest.parse::<Kind>().map_err(|e| e.to_string()))
    }

    /// `<prefix>.evt.<tenant>.<request_id>.<type>`.
    pub fn event(&self, tenant: &Tenant, request_id: &RequestId, event_type: EventType) -> String {
        format!(
            "{}.evt.{}.{}.{}",
            self.prefix,
            tenant,
            request_id,
            event_type.as_str()
        )
    }

    /// `<prefix>.evt.>`: every event.
    pub fn all_events(&self) -> String {
        format!("{}.evt.>", self.prefix)
    }

    /// `<prefix>.evt.*.*.<type>`: every event of one type.
    pub fn events_of_type(&self, event_type: EventType) -> String {
        format!("{}.evt.*.*.{}", self.prefix, event_type.as_str())
    }

    /// `<prefix>.evt.<tenant>.>`: one tenant's events.
    pub fn tenant_events(&self, tenant: &Tenant) -> String {
        format!("{}.evt.{}.>", self.prefix, tenant)
    }

    /// `<prefix>.evt.<tenant>.<request_id>.>`: one request's events.
    pub fn request_events(&self, tenant: &Tenant, request_id: &RequestId) -> String {
        format!("{}.evt.{}.{}.>", self.prefix, tenant, request_id)
    }

    /// `<prefix>.cfg.changed`.
    pub fn config_changed(&self) -> String {
        format!("{}.cfg.changed", self.prefix)
    }

    /// `<prefix>.dlq`.
    pub fn dlq(&self) -> String {
        format!("{}.dlq", self.prefix)
    }

    /// `<prefix>.replicas.heartbeat`: runtime processes announce themselves here, so
    /// each knows how many share every account's limits.
    pub fn replica_heartbeat(&self) -> String {
        format!("{}.replicas.heartbeat", self.prefix)
    }

    /// `<prefix>.breaker.opened`: a replica announces that an instance's breaker opened,
    /// so the others stop sending there too.
    pub fn breaker_opened(&self) -> String {
        format!("{}.breaker.opened", self.prefix)
    }

    /// `<prefix>.ctl`: the micro service's endpoint group.
    pub fn control(&self) -> String {
        format!("{}.ctl", self.prefix)
    }

    /// `SWITCHYARD_CMD` for the default prefix.
    pub fn command_stream(&self) -> String {
        format!("{}_CMD", self.stream_stem())
    }

    /// `SWITCHYARD_EVT` for the default prefix.
    pub fn event_stream(&self) -> String {
        format!("{}_EVT", self.stream_stem())
    }

    fn stream_stem(&self) -> String {
        self.prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    }
}

/// Whether `subject` matches a NATS filter with `*` (one token) and `>` (the rest)
/// wildcards.
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_nats() {
        assert!(subject_matches("a.>", "a.b.c"));
        assert!(!subject_matches("a.>", "a"));
        assert!(subject_matches("a.*.c", "a.b.c"));
        assert!(!subject_matches("a.*.c", "a.b.d"));
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.b.c"));
    }

    #[test]
    fn default_subjects_match_the_protocol() {
        let s = Subjects::default();
        assert_eq!(
            s.command(Kind::ImageGenerate),
            "switchyard.cmd.image.generate"
        );
        let tenant = Tenant::new("acme").unwrap();
        let id = RequestId::new("r1").unwrap();
        assert_eq!(
            s.event(&tenant, &id, EventType::Completed),
            "switchyard.evt.acme.r1.completed"
        );
        assert_eq!(s.config_changed(), "switchyard.cfg.changed");
        assert_eq!(s.dlq(), "switchyard.dlq");
        assert_eq!(s.command_stream(), "SWITCHYARD_CMD");
        assert_eq!(s.event_stream(), "SWITCHYARD_EVT");
        assert_eq!(
            s.kind_of_command_subject("switchyard.cmd.text.generate"),
            Some(Ok(Kind::TextGenerate))
        );
        assert!(matches!(
            s.kind_of_command_subject("switchyard.cmd.video"),
            Some(Err(_))
        ));
        assert_eq!(s.kind_of_command_subject("other.cmd.text.generate"), None);
    }

    #[test]
    fn stream_names_follow_the_prefix() {
        let s = Subjects::new("t-42.sy");
        assert_eq!(s.command_stream(), "T_42_SY_CMD");
        assert_eq!(s.all_commands(), "t-42.sy.cmd.>");
    }
}
