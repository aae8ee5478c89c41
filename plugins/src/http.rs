//! The guest's outbound HTTP: the plugin's allowlist on the host name, then the
//! process's outbound guard (a name is resolved once by the guard and connected to only
//! at addresses it allows; an IP literal passes only when the allowlist names it
//! itself), the API key filled in for the placeholder (URL and header values only) and
//! removed from the answer, no redirects, a body cap and the call's deadline.

use std::{net::IpAddr, time::Duration};

use reqwest::Method;

use crate::{API_KEY_PLACEHOLDER, CallContext, bindings::switchyard::provider::host};

/// Sends one guest request; every refusal is an `Err` the guest can read — with the
/// key removed, since the URL it names may carry it.
pub(crate) async fn send(
    context: &CallContext,
    request: host::HttpRequest,
    left: Duration,
) -> Result<host::HttpResponse, String> {
    let key = context.api_key.as_deref().unwrap_or_default();
    send_unredacted(context, request, left, key)
        .await
        .map_err(|message| redact(&message, key))
}

async fn send_unredacted(
    context: &CallContext,
    request: host::HttpRequest,
    left: Duration,
    key: &str,
) -> Result<host::HttpResponse, String> {
    let raw_url = request.url.replace(API_KEY_PLACEHOLDER, key);
    let url = url::Url::parse(&raw_url).map_err(|e| format!("bad url: {e}"))?;
    let shown = shown_url(&url);
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{shown}: only http and https are allowed"));
    }
    let host = url.host_str().ok_or_else(|| format!("{shown}: no host"))?;
    let port = url.port_or_known_default().unwrap_or(80);
    allowed_entry(&context.allowed_hosts, host, port)
        .ok_or_else(|| format!("{host}:{port} is not on this plugin's allowed_hosts"))?;
    let guard = context
        .outbound
        .as_ref()
        .ok_or_else(|| "this call has no network access".to_owned())?;
    let literal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok();
    // An IP literal got here only because the allowlist names that address itself (the
    // operator's choice); a name is checked by the guard's resolver at connect time.
    if !literal {
        guard.check_url(&url).map_err(|e| format!("{shown}: {e}"))?;
    }
    let method = Method::from_bytes(request.method.to_uppercase().as_bytes())
        .map_err(|_| format!("bad method '{}'", request.method))?;
    let mut builder = guard.client().request(method, url.clone()).timeout(left);
    for (name, value) in request.headers {
        builder = builder.header(name, value.replace(API_KEY_PLACEHOLDER, key));
    }
    if !request.body.is_empty() {
        builder = builder.body(request.body);
    }
    let mut response = builder
        .send()
        .await
        .map_err(|e| format!("{shown}: {}", guard.transport_error(&url, &e)))?;
    let status = response.status().as_u16();
    if response.status().is_redirection() {
        return Err(format!(
            "{shown}: redirects are not followed (HTTP {status})"
        ));
    }
    let headers = response
        .headers()
        .iter()
        .filter_map(|(name, value)| {
            let value = value.to_str().ok()?;
            Some((name.as_str().to_owned(), redact(value, key)))
        })
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("{shown}: {}", guard.transport_error(&url, &e)))?
    {
        if body.len() + chunk.len() > context.max_response_bytes {
            return Err(format!(
                "{shown}: the answer is larger than {} bytes",
                context.max_response_bytes
            ));
        }
        body.extend_from_slice(&chunk);
    }
    if key.len() >= 4 {
        body = redact_bytes(&body, key.as_bytes());
    }
    Ok(host::HttpResponse {
        status,
        headers,
        body,
    })
}

/// The URL without query (it may carry the key) for messages.
fn shown_url(url: &url::Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.path()
    )
}

/// The allowlist entry that admits `host:port`: `name`, `name:port`, `*.domain`, or
/// an IP literal with or without port.
fn allowed_entry<'a>(allowed: &'a [String], host: &str, port: u16) -> Option<&'a str> {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    allowed.iter().map(String::as_str).find(|entry| {
        let entry = entry.trim().to_ascii_lowercase();
        let (name, entry_port) = match entry.rsplit_once(':') {
            Some((name, p)) if !name.contains(':') || name.ends_with(']') => (
                name.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
                p.parse::<u16>().ok(),
            ),
            _ => (entry.clone(), None),
        };
        let port_ok = entry_port.is_none_or(|p| p == port);
        let name_ok = match name.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => name == host,
        };
        port_ok && name_ok
    })
}

fn redact(text: &str, key: &str) -> String {
    if key.len() >= 4 && text.contains(key) {
        text.replace(key, "****")
    } else {
        text.to_owned()
    }
}

fn redact_bytes(body: &[u8], key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with(key) {
            out.extend_from_slice(b"****");
            i += key.len();
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_matches_names_wildcards_and_ports() {
        let allowed = vec![
            "api.replicate.com".to_owned(),
            "*.replicate.delivery".to_owned(),
            "127.0.0.1:8080".to_owned(),
        ];
        assert!(allowed_entry(&allowed, "api.replicate.com", 443).is_some());
        assert!(allowed_entry(&allowed, "pbxt.replicate.delivery", 443).is_some());
        assert!(allowed_entry(&allowed, "replicate.delivery.evil.com", 443).is_none());
        assert!(allowed_entry(&allowed, "127.0.0.1", 8080).is_some());
        assert!(allowed_entry(&allowed, "127.0.0.1", 8081).is_none());
        assert!(allowed_entry(&allowed, "evil.com", 443).is_none());
        assert!(allowed_entry(&[], "api.replicate.com", 443).is_none());
    }

    #[tokio::test]
    async fn refusals_never_carry_the_key_even_when_the_url_does() {
        let mut context = CallContext::new(None, Duration::from_secs(1));
        context.api_key = Some("sk-in-the-path-123".into());
        context.allowed_hosts = vec!["127.0.0.1:9".into()];
        for url in [
            "http://evil.example/{{api_key}}/x",
            "http://127.0.0.1:9/{{api_key}}/x",
            "ftp://127.0.0.1:9/{{api_key}}",
        ] {
            let request = host::HttpRequest {
                method: "GET".into(),
                url: url.into(),
                headers: Vec::new(),
                body: Vec::new(),
            };
            let error = send(&context, request, Duration::from_secs(1))
                .await
                .err()
                .unwrap_or_default();
            assert!(!error.is_empty(), "{url} must fail");
            assert!(!error.contains("sk-in-the-path-123"), "{url}: {error}");
        }
    }

    #[test]
    fn keys_are_removed_from_answers() {
        assert_eq!(
            redact_bytes(b"key=sk-123 and sk-123", b"sk-123"),
            b"key=**** and ****"
        );
        assert_eq!(redact("Bearer sk-123", "sk-123"), "Bearer ****");
    }
}
