//! Secrets kept out of messages: URLs with their password masked.

/// A URL with any password replaced, for error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn urls_in_errors_hide_passwords() {
        assert_eq!(
            redact_url("postgres://u:hunter2@db/x"),
            "postgres://u:***@db/x"
        );
        assert_eq!(redact_url("postgres://db/x"), "postgres://db/x");
    }
}
