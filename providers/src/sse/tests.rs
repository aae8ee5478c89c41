use futures_util::{FutureExt as _, StreamExt as _};
use proptest::prelude::*;
use switchyard_core::{ApiKey, ErrorCode, ProviderType};

use super::*;
use crate::wire::{Api, Refined};

fn decode(chunks: &[&[u8]]) -> Result<Vec<SseEvent>, SseError> {
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    for chunk in chunks {
        decoder.push(chunk, &mut out)?;
    }
    Ok(out)
}

fn event(event: &str, data: &str) -> SseEvent {
    SseEvent {
        event: event.to_owned(),
        data: data.to_owned(),
    }
}

#[test]
fn fields_comments_and_blank_lines_make_events_as_the_format_says() {
    let stream = b"data: YHOO\ndata: +2\ndata: 10\n\n: a comment\nevent: add\ndata:73857293\nid: 1\nretry: 10\nunknown: x\n\ndata\n\ndata:  two spaces\n\nevent: only\n\ndata: cut";
    assert_eq!(
        decode(&[stream]),
        Ok(vec![
            event("message", "YHOO\n+2\n10"),
            event("add", "73857293"),
            event("message", ""),
            event("message", " two spaces"),
        ])
    );
}

#[test]
fn every_line_ending_counts_also_split_across_chunks() {
    let want = Ok(vec![
        event("message", "a"),
        event("message", "b"),
        event("message", "c"),
    ]);
    assert_eq!(decode(&[b"data: a\r\n\r\ndata: b\r\rdata: c\n\n"]), want);
    assert_eq!(
        decode(&[
            b"data: a\r",
            b"\n\r",
            b"\ndata: b\r",
            b"\r",
            b"data: c\n",
            b"\n"
        ]),
        want
    );
}

#[test]
fn a_byte_order_mark_is_dropped_only_at_the_start() {
    let stream = "\u{feff}data: a\n\n\u{feff}data: b\n\n";
    let events = decode(&[stream.as_bytes()]).unwrap();
    assert_eq!(events[0], event("message", "a"));
    assert_eq!(events.len(), 1, "'\\u{{feff}}data' is an unknown field");
}

#[test]
fn invalid_utf8_is_replaced_and_the_events_after_it_still_come() {
    let events = decode(&[b"data: \xff\xfe\n\ndata: ok\n\n"]).unwrap();
    assert_eq!(
        events,
        vec![event("message", "\u{fffd}\u{fffd}"), event("message", "ok")]
    );
    // A sequence split across chunks is one character.
    let euro = "data: €\n\n".as_bytes();
    assert_eq!(
        decode(&[&euro[..7], &euro[7..]]).unwrap(),
        vec![event("message", "€")]
    );
}

#[test]
fn an_event_over_the_bound_is_refused_but_many_events_are_not() {
    let line = vec![b'a'; MAX_EVENT_BYTES / 4];
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    for _ in 0..8 {
        decoder.push(b"data: ", &mut out).unwrap();
        decoder.push(&line, &mut out).unwrap();
        decoder.push(b"\n\n", &mut out).unwrap();
    }
    assert_eq!(out.len(), 8);
    let mut decoder = SseDecoder::new();
    let mut result = Ok(());
    for _ in 0..5 {
        result = result.and_then(|()| decoder.push(&line, &mut out));
    }
    assert_eq!(result, Err(SseError::EventTooLarge));
}

fn api() -> Api {
    Api::new(
        ProviderType::Openai,
        Some("http://127.0.0.1:1"),
        "",
        Some(ApiKey::new("sk-secret-123456")),
        |_, _| Refined::default(),
    )
}

/// A response whose body sends `chunks` and then nothing, without ending.
fn open_response(chunks: Vec<Vec<u8>>) -> reqwest::Response {
    let body = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>))
        .chain(futures_util::stream::pending());
    reqwest::Response::from(http::Response::new(reqwest::Body::wrap_stream(body)))
}

/// Found while writing the stream fuzz target (issue #14): after one invalid UTF-8
/// byte, the old decoder (`eventsource-stream`) buffered the rest of the stream and
/// yielded nothing more until the stream ended.
#[test]
fn the_events_after_invalid_utf8_come_while_the_stream_is_open() {
    let mut events = api().events(open_response(vec![
        b"data: \xff\n\ndata: [DONE]\n\n".to_vec(),
    ]));
    let first = events
        .next()
        .now_or_never()
        .flatten()
        .map(|e| e.map(|e| e.data));
    assert_eq!(first, Some(Ok("\u{fffd}".to_owned())));
    let second = events
        .next()
        .now_or_never()
        .flatten()
        .map(|e| e.map(|e| e.data));
    assert_eq!(second, Some(Ok("[DONE]".to_owned())));
}

/// Found while writing the stream fuzz target (issue #14): nothing bounded one event,
/// so a provider could make the gateway hold a line as long as it liked.
#[test]
fn an_event_larger_than_the_bound_is_a_provider_error() {
    let mut chunks = vec![b"data: ".to_vec()];
    chunks.extend(std::iter::repeat_n(
        vec![b'a'; 1 << 20],
        MAX_EVENT_BYTES >> 20,
    ));
    chunks.push(b"a\n\n".to_vec());
    let mut events = api().events(open_response(chunks));
    let first = events.next().now_or_never().flatten();
    let error = first.and_then(Result::err).map(|e| e.code);
    assert_eq!(error, Some(ErrorCode::ProviderError));
    assert!(
        events.next().now_or_never().flatten().is_none(),
        "the stream ends after its error"
    );
}

fn cases() -> u32 {
    std::env::var("SWITCHYARD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// However a stream is cut into chunks, it decodes to the same events.
    #[test]
    fn chunking_never_changes_the_events(
        lines in proptest::collection::vec(
            prop_oneof![
                Just(String::new()),
                "(data|event|id|:)[: ]?[a-z€\u{feff}]{0,6}",
                "[a-z:]{0,4}"
            ],
            0..24,
        ),
        ends in proptest::collection::vec(prop_oneof![Just("\n"), Just("\r\n"), Just("\r")], 24),
        size in 1..12usize,
    ) {
        let mut stream = Vec::new();
        for (line, end) in lines.iter().zip(&ends) {
            stream.extend_from_slice(line.as_bytes());
            stream.extend_from_slice(end.as_bytes());
        }
        let whole = decode(&[&stream]);
        let chunks: Vec<&[u8]> = stream.chunks(size).collect();
        prop_assert_eq!(decode(&chunks), whole);
    }
}
