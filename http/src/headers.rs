//! Security headers on every response: `X-Content-Type-Options: nosniff`,
//! `Referrer-Policy: no-referrer`, a Content-Security-Policy that lets nothing load or
//! frame (the server serves JSON, images and event streams, never pages), and HSTS when
//! the service is reached over https (`http.public_url`).

use axum::{
    extract::{Request, State},
    http::{HeaderValue, header},
    middleware::Next,
    response::Response,
};

/// Whether to send HSTS (the public URL is https).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Https(pub(crate) bool);

/// Middleware: adds the headers, never replacing one a handler set.
pub(crate) async fn security_headers(
    State(Https(https)): State<Https>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let mut set = |name, value: &'static str| {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    };
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::REFERRER_POLICY, "no-referrer");
    set(
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    );
    if https {
        set(header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    }
    response
}
