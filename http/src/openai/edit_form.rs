//! The multipart form of `POST /v1/images/edits`, read and checked: OpenAI's fields
//! (`image` or `image[]`, `mask`, `prompt`, `model`, `n`, `size`, `quality`,
//! `response_format`, `output_format`, `user`) into what the command needs.
//!
//! Reading is separate from storing: the caller's `store` keeps each file (the handler
//! stores it as an artifact) and names it. A form is refused as soon as it holds more
//! images than a command takes ([`MAX_EDIT_IMAGES`]) or a second mask, before that file
//! is stored: otherwise one 64 MiB body of tiny images would store hundreds of thousands
//! of artifacts before the command's validation refuses it (issue #14). The fuzz target
//! of the form drives this reader over the real `Multipart` extractor.

use std::{collections::HashMap, future::Future};

use axum::{body::Bytes, extract::Multipart};
use switchyard_core::{CommandInput, ImageRef, MAX_EDIT_IMAGES};

use super::error::OaiError;

/// An edit form as read: its files stored, its other fields as text.
#[derive(Debug, Default)]
pub(crate) struct EditForm {
    /// `image` / `image[]`, in order.
    images: Vec<ImageRef>,
    /// `mask`.
    mask: Option<ImageRef>,
    /// Every other field, by name (the last one of a name wins).
    fields: HashMap<String, String>,
}

/// What an edit form asks for.
#[derive(Debug)]
pub(crate) struct EditAsk {
    /// The command's `input`.
    pub input: CommandInput,
    /// `response_format: b64_json`.
    pub b64: bool,
    /// `user`.
    pub user: Option<String>,
    /// `model`.
    pub model: Option<String>,
}

/// Reads an edit form field by field. `store` keeps a file of field `image`, `image[]`
/// or `mask` and names it.
///
/// # Errors
/// A 400 for a form that does not parse, a field that cannot be read, more than
/// [`MAX_EDIT_IMAGES`] images or a second mask; `store`'s own.
pub(crate) async fn read_edit_form<S, F>(
    form: &mut Multipart,
    mut store: S,
) -> Result<EditForm, OaiError>
where
    S: FnMut(String, Bytes) -> F,
    F: Future<Output = Result<ImageRef, OaiError>>,
{
    let mut read = EditForm::default();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| OaiError::bad_request(format!("the form does not parse: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "image" | "image[]" if read.images.len() >= MAX_EDIT_IMAGES => {
                return Err(OaiError::bad_request(format!(
                    "image: at most {MAX_EDIT_IMAGES} image files are allowed"
                )));
            }
            "mask" if read.mask.is_some() => {
                return Err(OaiError::bad_request("mask: only one mask file is allowed"));
            }
            _ => {}
        }
        let bytes = field
            .bytes()
            .await
            .map_err(|e| OaiError::bad_request(format!("{name}: cannot be read: {e}")))?;
        match name.as_str() {
            "image" | "image[]" => read.images.push(store(name, bytes).await?),
            "mask" => read.mask = Some(store(name, bytes).await?),
            _ => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                read.fields.insert(name, text);
            }
        }
    }
    Ok(read)
}

impl EditForm {
    /// The command input and answer format the form asks for.
    ///
    /// # Errors
    /// A 400 for an unknown `response_format`, no image, or an `n` that is not a number.
    pub(crate) fn ask(mut self) -> Result<EditAsk, OaiError> {
        let mut text = |name: &str| self.fields.remove(name);
        let b64 = wants_b64(text("response_format").as_deref())?;
        if self.images.is_empty() {
            return Err(OaiError::bad_request(
                "image: at least one image file is required",
            ));
        }
        let n = text("n")
            .map(|n| {
                n.parse::<i64>()
                    .map_err(|_| OaiError::bad_request(format!("n: '{n}' is not a number")))
            })
            .transpose()?;
        let input = CommandInput {
            prompt: Some(text("prompt").unwrap_or_default()),
            n,
            size: text("size"),
            quality: text("quality"),
            output_format: text("output_format"),
            images: Some(self.images),
            mask: self.mask,
            ..CommandInput::default()
        };
        Ok(EditAsk {
            input,
            b64,
            user: text("user"),
            model: text("model"),
        })
    }
}

/// `response_format`: whether images come back as base64.
pub(super) fn wants_b64(format: Option<&str>) -> Result<bool, OaiError> {
    match format {
        None | Some("url") => Ok(false),
        Some("b64_json") => Ok(true),
        Some(other) => Err(OaiError::bad_request(format!(
            "response_format: '{other}' is neither 'url' nor 'b64_json'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use axum::{
        body::Body,
        extract::{FromRequest, Request},
        http::header::CONTENT_TYPE,
    };
    use futures_util::FutureExt as _;

    use super::*;

    fn form_of(parts: &[&str]) -> Multipart {
        let mut body = String::new();
        for name in parts {
            body.push_str(&format!(
                "--B\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"x.png\"\r\n\r\nbytes\r\n"
            ));
        }
        body.push_str("--B--\r\n");
        let mut request = Request::new(Body::from(body));
        request.headers_mut().insert(
            CONTENT_TYPE,
            "multipart/form-data; boundary=B".parse().unwrap(),
        );
        Multipart::from_request(request, &())
            .now_or_never()
            .unwrap()
            .unwrap()
    }

    /// Reads a form with a store that counts what it keeps.
    fn read_counting(parts: &[&str]) -> (Result<EditForm, OaiError>, usize) {
        let mut form = form_of(parts);
        let mut stored = 0;
        let read = read_edit_form(&mut form, |_, _| {
            stored += 1;
            async { Ok(ImageRef::default()) }
        })
        .now_or_never()
        .unwrap();
        (read, stored)
    }

    #[test]
    fn ten_images_and_a_mask_are_read() {
        let mut parts = vec!["image[]"; MAX_EDIT_IMAGES];
        parts.push("mask");
        let (read, stored) = read_counting(&parts);
        let read = read.unwrap();
        assert_eq!((read.images.len(), read.mask.is_some()), (10, true));
        assert_eq!(stored, 11);
    }

    #[test]
    fn an_eleventh_image_is_refused_before_it_is_stored() {
        let parts = vec!["image[]"; 40];
        let (read, stored) = read_counting(&parts);
        let error = axum::response::IntoResponse::into_response(read.unwrap_err());
        assert_eq!(error.status(), axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(stored, MAX_EDIT_IMAGES);
    }

    #[test]
    fn a_second_mask_is_refused_before_it_is_stored() {
        let (read, stored) = read_counting(&["image", "mask", "mask", "mask"]);
        assert!(read.is_err());
        assert_eq!(stored, 2);
    }
}
