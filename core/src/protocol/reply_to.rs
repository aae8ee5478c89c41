//! Which `reply_to` subjects a command may name (PROTOCOL.md §2). The gateway publishes
//! a request's terminal event there, so a free choice would let a tenant publish into
//! the gateway's own subjects (a forged event for another tenant, a config-change
//! notice, a fake replica heartbeat) or into the server's `$` subjects.

use super::subjects::subject_matches;

/// The rules: `_INBOX.…` always, subjects matching an operator allow-list entry (NATS
/// wildcards `*` and `>`), never anything under the gateway's own prefix or `$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyToPolicy {
    prefix: String,
    allow: Vec<String>,
}

impl ReplyToPolicy {
    /// The rules for a gateway whose subjects start with `prefix`, with the operator's
    /// allow-list.
    pub fn new(prefix: impl Into<String>, allow: Vec<String>) -> Self {
        Self {
            prefix: prefix.into(),
            allow,
        }
    }

    /// Whether `subject` may be a command's `reply_to`.
    ///
    /// # Errors
    /// Why not, for an `invalid_request` naming `reply_to`.
    pub fn check(&self, subject: &str) -> Result<(), String> {
        check_subject(subject)?;
        if subject.starts_with('$') {
            return Err(format!("'{subject}' is a server subject ($…)"));
        }
        let own = &self.prefix;
        if subject == own.as_str() || subject.starts_with(&format!("{own}.")) {
            return Err(format!(
                "'{subject}' is under the gateway's own prefix '{own}'"
            ));
        }
        if subject.starts_with("_INBOX.") {
            return Ok(());
        }
        if self
            .allow
            .iter()
            .any(|filter| subject_matches(filter, subject))
        {
            return Ok(());
        }
        Err(format!(
            "'{subject}' must be an _INBOX. subject or match the operator's allow-list"
        ))
    }

    /// The rules for a caller with a tenant key over HTTP: `_INBOX.…` only.
    ///
    /// # Errors
    /// As [`ReplyToPolicy::check`].
    pub fn check_for_tenant_key(&self, subject: &str) -> Result<(), String> {
        self.check(subject)?;
        if subject.starts_with("_INBOX.") {
            Ok(())
        } else {
            Err(format!(
                "'{subject}': a job posted with a tenant key may only reply to an _INBOX. subject"
            ))
        }
    }
}

/// A publishable subject: tokens of printable ASCII without wildcards, separated by
/// single dots, at most 255 bytes.
pub fn check_subject(subject: &str) -> Result<(), String> {
    if subject.is_empty() || subject.len() > 255 {
        return Err("must be 1–255 bytes".to_owned());
    }
    for token in subject.split('.') {
        if token.is_empty() {
            return Err(format!("'{subject}' has an empty token"));
        }
        if token == "*" || token == ">" || token.contains(['*', '>']) {
            return Err(format!("'{subject}' has a wildcard"));
        }
        if !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(format!("'{subject}' has a space or a non-ASCII character"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ReplyToPolicy {
        ReplyToPolicy::new("switchyard", vec!["replies.*.done".into(), "svc.>".into()])
    }

    #[test]
    fn the_gateways_own_and_server_subjects_are_refused() {
        for subject in [
            "switchyard.cfg.changed",
            "switchyard.evt.other.r1.completed",
            "switchyard.replicas.heartbeat",
            "switchyard",
            "$JS.API.STREAM.DELETE.x",
            "$SYS.REQ.SERVER.PING",
        ] {
            assert!(policy().check(subject).is_err(), "{subject}");
        }
    }

    #[test]
    fn inboxes_and_allowed_subjects_pass_and_others_do_not() {
        let p = policy();
        assert_eq!(p.check("_INBOX.abc.1"), Ok(()));
        assert_eq!(p.check("replies.acme.done"), Ok(()));
        assert_eq!(p.check("svc.a.b"), Ok(()));
        assert!(p.check("replies.acme.other").is_err());
        assert!(p.check("elsewhere").is_err());
        assert!(p.check_for_tenant_key("svc.a").is_err());
        assert_eq!(p.check_for_tenant_key("_INBOX.x"), Ok(()));
    }

    #[test]
    fn malformed_subjects_are_refused() {
        for subject in [
            "",
            "_INBOX..x",
            "_INBOX.*",
            "_INBOX.>",
            "_INBOX.a b",
            "_INBOX.x.",
        ] {
            assert!(policy().check(subject).is_err(), "{subject:?}");
        }
    }
}
