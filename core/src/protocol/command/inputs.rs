//! The `input` rules of each kind (PROTOCOL.md §2), called by `Command::validate`.

use super::{CommandInput, MAX_EDIT_IMAGES};
use crate::kind::Kind;

pub(super) fn validate_image_input(
    input: &CommandInput,
    kind: Kind,
    bad: &mut impl FnMut(&str, String),
) {
    match input.prompt.as_deref().map(str::trim) {
        None => bad("input.prompt", "is required".to_owned()),
        Some("") => bad("input.prompt", "must not be empty".to_owned()),
        Some(_) => {}
    }
    if let Some(n) = input.n
        && !(1..=10).contains(&n)
    {
        bad("input.n", format!("must be 1–10, got {n}"));
    }
    if let Some(size) = &input.size
        && !is_valid_size(size)
    {
        bad(
            "input.size",
            format!("'{size}' is neither WxH (e.g. 1024x1024) nor a size token (e.g. 2K)"),
        );
    }
    if let Some(format) = &input.output_format
        && !matches!(format.as_str(), "png" | "jpeg" | "webp")
    {
        bad(
            "input.output_format",
            format!("must be png, jpeg or webp, got '{format}'"),
        );
    }
    match (kind, &input.images) {
        (Kind::ImageEdit, None) => bad("input.images", "is required for image.edit".to_owned()),
        (Kind::ImageEdit, Some(images)) if images.is_empty() || images.len() > MAX_EDIT_IMAGES => {
            bad(
                "input.images",
                format!("must hold 1–{MAX_EDIT_IMAGES} images, got {}", images.len()),
            );
        }
        (Kind::ImageEdit, Some(images)) => {
            for (i, image) in images.iter().enumerate() {
                if let Err(message) = image.check() {
                    bad(&format!("input.images[{i}]"), message);
                }
            }
        }
        (_, Some(_)) => bad("input.images", "is only valid for image.edit".to_owned()),
        (_, None) => {}
    }
    if let Some(mask) = &input.mask {
        if kind != Kind::ImageEdit {
            bad("input.mask", "is only valid for image.edit".to_owned());
        } else if let Err(message) = mask.check() {
            bad("input.mask", message);
        }
    }
}

pub(super) fn validate_text_input(input: &CommandInput, bad: &mut impl FnMut(&str, String)) {
    match &input.messages {
        None => bad("input.messages", "is required for text.generate".to_owned()),
        Some(messages) if messages.is_empty() => {
            bad(
                "input.messages",
                "must hold at least one message".to_owned(),
            );
        }
        Some(messages)
            if messages.iter().all(|m| {
                m.content.trim().is_empty() && m.parts.as_ref().is_none_or(Vec::is_empty)
            }) =>
        {
            bad("input.messages", "all messages are empty".to_owned());
        }
        Some(messages) => {
            for (index, message) in messages.iter().enumerate() {
                if let Some(parts) = &message.parts {
                    super::parts::check_parts(index, parts, bad);
                }
            }
        }
    }
    if let Some(max_tokens) = input.max_tokens
        && max_tokens <= 0
    {
        bad("input.max_tokens", format!("must be > 0, got {max_tokens}"));
    }
    if let Some(t) = input.temperature
        && !(0.0..=2.0).contains(&t)
    {
        bad("input.temperature", format!("must be 0–2, got {t}"));
    }
    if let Some(p) = input.top_p
        && !(0.0..=1.0).contains(&p)
    {
        bad("input.top_p", format!("must be 0–1, got {p}"));
    }
}

/// `WxH` with both sides 1–8192, or an alphanumeric size token such as `2K`.
pub(crate) fn is_valid_size(size: &str) -> bool {
    if let Some((w, h)) = size.split_once('x') {
        let side = |s: &str| s.parse::<u32>().is_ok_and(|v| (1..=8192).contains(&v));
        return side(w) && side(h);
    }
    !size.is_empty() && size.len() <= 16 && size.chars().all(|c| c.is_ascii_alphanumeric())
}
