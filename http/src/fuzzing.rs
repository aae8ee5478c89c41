//! The entry point of the edit form's fuzz target (issue #14): a `POST /v1/images/edits`
//! body, arriving in arbitrary chunks, through the real `Multipart` extractor and the
//! handler's form reader, every file through the image check the artifact store makes
//! (`describe`), and the form's command validated and carried over the bus (serialized
//! and parsed again) as the handler's would be. Not an API for anything else (hidden
//! from the docs).
//!
//! [`edit_form_holds`] returns `Err` with a description when a property that holds for
//! any form is broken (a panic is a finding of its own): no more files are stored than
//! one command takes, and a command that validates here is accepted by the bus's
//! intake. [`edit_form_bytes_hold`] is one fuzz input through it: the `edit_form`
//! target of `fuzz/` (cargo-fuzz) and the proptest smoke tests in `fuzzing/tests.rs` call
//! the same functions.

use axum::{
    body::{Body, Bytes},
    extract::{FromRequest, Multipart, Request},
    http::{HeaderValue, Method, header::CONTENT_TYPE},
};
use futures_util::FutureExt as _;
use switchyard_core::{Command, ImageRef, Kind, MAX_EDIT_IMAGES, RequestId, Tenant};
use switchyard_runtime::facade::describe_image;

use crate::openai::{edit_form::read_edit_form, error::OaiError};

/// Reads an edit form with content type `content_type` from `chunks` and checks what
/// holds for any form: the command it makes, or `None` when it is refused.
///
/// # Errors
/// A description of the broken property.
pub async fn edit_form_holds(
    content_type: &[u8],
    chunks: Vec<Vec<u8>>,
) -> Result<Option<Command>, String> {
    let Ok(content_type) = HeaderValue::from_bytes(content_type) else {
        return Ok(None); // no client can send it
    };
    let body = Body::from_stream(futures_util::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, std::io::Error>(Bytes::from(c))),
    ));
    let mut request = Request::new(body);
    *request.method_mut() = Method::POST;
    request.headers_mut().insert(CONTENT_TYPE, content_type);
    let Ok(mut form) = Multipart::from_request(request, &()).await else {
        return Ok(None); // answered 400 by the extractor
    };
    let mut stored = 0;
    let read = read_edit_form(&mut form, |name, bytes| {
        stored += 1;
        let described = describe_image(&bytes);
        async move {
            let meta = described
                .map_err(|why| OaiError::bad_request(format!("{name}: not an image ({why})")))?;
            Ok(ImageRef {
                artifact_id: Some(meta.id),
                ..ImageRef::default()
            })
        }
    })
    .await;
    if stored > MAX_EDIT_IMAGES + 1 {
        return Err(format!("one form stored {stored} files"));
    }
    let Ok(ask) = read.and_then(|form| form.ask()) else {
        return Ok(None); // a 400
    };
    let mut command = Command::new(
        RequestId::new("oai-fuzz").map_err(|e| e.to_string())?,
        Tenant::new("fuzz").map_err(|e| e.to_string())?,
        Kind::ImageEdit,
        ask.input,
    );
    command.user = ask.user;
    if command.validate(None).is_err() {
        return Ok(None); // a 400
    }
    let sent = serde_json::to_vec(&command).map_err(|e| e.to_string())?;
    match Command::parse_and_validate(&sent, None) {
        Ok(_) => Ok(Some(command)),
        Err(e) => Err(format!("a valid edit command fails on the bus: {e}")),
    }
}

/// [`edit_form_holds`] run to its end at once: an in-memory form never waits.
///
/// # Errors
/// A description of the broken property, or that the form waited.
pub fn edit_form_holds_now(
    content_type: &[u8],
    chunks: Vec<Vec<u8>>,
) -> Result<Option<Command>, String> {
    edit_form_holds(content_type, chunks)
        .now_or_never()
        .unwrap_or_else(|| Err("an in-memory form waited".to_owned()))
}

/// One fuzz input, split by [`edit_form_input`], through [`edit_form_holds_now`] (an
/// input too short to split holds).
///
/// # Errors
/// A description of the broken property.
pub fn edit_form_bytes_hold(data: &[u8]) -> Result<(), String> {
    match edit_form_input(data) {
        Some((content_type, chunks)) => edit_form_holds_now(content_type, chunks).map(drop),
        None => Ok(()),
    }
}

/// A fuzz input as an edit form: its first line is the content type, the next byte the
/// chunk length (1–256 bytes); the rest is the body.
pub fn edit_form_input(data: &[u8]) -> Option<(&[u8], Vec<Vec<u8>>)> {
    let at = data.iter().position(|&b| b == b'\n')?;
    let (content_type, rest) = (&data[..at], &data[at + 1..]);
    let (&size, body) = rest.split_first()?;
    let chunks = body
        .chunks(usize::from(size) + 1)
        .map(<[u8]>::to_vec)
        .collect();
    Some((content_type, chunks))
}

#[cfg(test)]
mod tests;
