//! Server-sent events of a provider's streamed answer (the WHATWG event-stream format),
//! decoded in time linear in the stream, with bounds on one event and on the stream.
//!
//! Why not the `eventsource-stream` crate (used until issue #14): it re-parsed its whole
//! buffer on every chunk and copied the rest of the buffer for every line, so a long
//! line arriving in small chunks, or many short lines in one chunk, took time quadratic
//! in their size (a 2 MB line in 1 KiB chunks: 3 s of CPU; measured with the stream
//! fuzz target's entry point); after one invalid UTF-8 byte it buffered the rest of the
//! stream and yielded nothing until the stream ended; and nothing bounded an event. Here
//! each byte is looked at once, a line is decoded as UTF-8 with replacement (as the
//! format says), and an event over [`MAX_EVENT_BYTES`] or a stream over
//! [`MAX_STREAM_BYTES`] is an error.
//!
//! Only what the adapters read is kept: the event type and the data. `id` and `retry`
//! are for reconnecting, which an adapter never does.

/// The largest event (its data and type, and a line still arriving) a stream may send.
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;
/// The most bytes one streamed answer may send (as much as a whole JSON answer).
pub const MAX_STREAM_BYTES: usize = super::wire::MAX_JSON_BYTES;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// Its type: the last `event:` field, else `message`.
    pub event: String,
    /// Its `data:` lines, joined by `\n`.
    pub data: String,
}

/// Why a stream cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// One event grew past [`MAX_EVENT_BYTES`].
    #[error("an event is larger than {max} bytes", max = MAX_EVENT_BYTES)]
    EventTooLarge,
    /// The stream grew past [`MAX_STREAM_BYTES`].
    #[error("the stream is larger than {max} bytes", max = MAX_STREAM_BYTES)]
    StreamTooLarge,
}

/// Decodes a stream pushed to it chunk by chunk.
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// The line still arriving (never a line end in it).
    line: Vec<u8>,
    /// The last chunk ended in `\r`: a `\n` first in the next one belongs to it.
    after_cr: bool,
    /// Whether the first bytes (and a byte-order mark) have been seen.
    started: bool,
    /// The event type field so far.
    event: String,
    /// The data so far, each line followed by `\n`.
    data: String,
    /// Bytes pushed so far.
    total: usize,
}

impl SseDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes `chunk`, adding the events it completes to `out`.
    ///
    /// # Errors
    /// [`SseError`] when an event or the stream grows too large; the decoder is done.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        self.total = self.total.saturating_add(chunk.len());
        if self.total > MAX_STREAM_BYTES {
            return Err(SseError::StreamTooLarge);
        }
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        while let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&chunk[..end]);
            self.check_size()?;
            self.end_line(out);
            let crlf = chunk[end] == b'\r' && chunk.get(end + 1) == Some(&b'\n');
            if chunk[end] == b'\r' && end + 1 == chunk.len() {
                self.after_cr = true;
            }
            chunk = &chunk[end + 1 + usize::from(crlf)..];
        }
        self.line.extend_from_slice(chunk);
        self.check_size()
    }

    fn check_size(&self) -> Result<(), SseError> {
        if self.line.len() + self.data.len() + self.event.len() > MAX_EVENT_BYTES {
            return Err(SseError::EventTooLarge);
        }
        Ok(())
    }

    /// The line in `self.line` is complete.
    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let mut line: &[u8] = &self.line;
        if !self.started {
            self.started = true;
            line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(out);
        } else if line[0] != b':' {
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(at) => {
                    let value = &line[at + 1..];
                    (&line[..at], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (line, &[][..]),
            };
            match field {
                b"event" => self.event = String::from_utf8_lossy(value).into_owned(),
                b"data" => {
                    self.data.push_str(&String::from_utf8_lossy(value));
                    self.data.push('\n');
                }
                // `id`, `retry` (for reconnecting) and unknown fields.
                _ => {}
            }
        }
        self.line.clear();
    }

    /// A blank line: the event so far is complete (an event without data is none).
    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let mut data = std::mem::take(&mut self.data);
        let event = std::mem::take(&mut self.event);
        if data.is_empty() {
            return;
        }
        data.pop(); // the `\n` after the last data line
        out.push(SseEvent {
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data,
        });
    }
}

#[cfg(test)]
mod tests;
