//! AWS event-stream frames as Bedrock sends them: one `Message` per event or exception, in the AWS event-stream
//! wire format (the same bytes `aws_smithy_eventstream` writes). Owns the header names and the frame bytes; knows nothing of HTTP.

use bytes::Bytes;

/// The `:event-type` of an event frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Chunk,
    Trace,
    ReturnControl,
    Files,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chunk => "chunk",
            Self::Trace => "trace",
            Self::ReturnControl => "returnControl",
            Self::Files => "files",
        }
    }
}

/// Prelude (total length, headers length, prelude CRC) before the headers.
const PRELUDE: usize = 12;
/// The longest header value the format allows (its 2-byte length is capped at `i16::MAX`).
const MAX_HEADER_VALUE: usize = i16::MAX as usize;

/// Appends one string header (type 7) in the wire format; false when it does not fit the format.
fn put_header(buf: &mut Vec<u8>, name: &str, value: &str) -> bool {
    let (Ok(name_len), Ok(value_len)) = (u8::try_from(name.len()), u16::try_from(value.len()))
    else {
        return false;
    };
    if value.len() > MAX_HEADER_VALUE {
        return false;
    }
    buf.push(name_len);
    buf.extend_from_slice(name.as_bytes());
    buf.push(7);
    buf.extend_from_slice(&value_len.to_be_bytes());
    buf.extend_from_slice(value.as_bytes());
    true
}

/// A frame written in place: the prelude is reserved, the headers and then the payload are
/// appended to the same buffer, and `finish` fills in the lengths and both CRCs. The bytes are
/// those `aws_smithy_eventstream::frame::write_message_to` writes for the same message (tests
/// check it), without building a `Message` around a copy of the payload.
struct FrameWriter {
    buf: Vec<u8>,
    headers_end: usize,
}

impl FrameWriter {
    fn new(capacity: usize, headers: [(&str, &str); 3]) -> Option<Self> {
        let mut buf = Vec::with_capacity(capacity + 128);
        buf.resize(PRELUDE, 0);
        for (name, value) in headers {
            if !put_header(&mut buf, name, value) {
                return None;
            }
        }
        let headers_end = buf.len();
        Some(Self { buf, headers_end })
    }

    /// Lengths and CRCs; an empty frame when the message exceeds the format's 4 GiB.
    fn finish(mut self) -> Bytes {
        let headers_len = self.headers_end - PRELUDE;
        let (Ok(total), Ok(headers)) = (
            u32::try_from(self.buf.len() + 4),
            u32::try_from(headers_len),
        ) else {
            return Bytes::new();
        };
        self.buf[0..4].copy_from_slice(&total.to_be_bytes());
        self.buf[4..8].copy_from_slice(&headers.to_be_bytes());
        let prelude_crc = crc32fast::hash(&self.buf[0..8]);
        self.buf[8..12].copy_from_slice(&prelude_crc.to_be_bytes());
        let message_crc = crc32fast::hash(&self.buf);
        self.buf.extend_from_slice(&message_crc.to_be_bytes());
        Bytes::from(self.buf)
    }
}

fn event_headers(kind: EventType) -> [(&'static str, &'static str); 3] {
    [
        (":event-type", kind.as_str()),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ]
}

/// An event frame: `:message-type=event`, `:event-type`, `:content-type=application/json`.
pub fn event(kind: EventType, json: &[u8]) -> Bytes {
    let Some(mut w) = FrameWriter::new(json.len(), event_headers(kind)) else {
        return Bytes::new();
    };
    w.buf.extend_from_slice(json);
    w.finish()
}

/// An exception frame: `:message-type=exception`, `:exception-type` (camelCase, as Bedrock sends
/// it), payload `{"message": ...}`. The stream ends after it.
pub fn exception(exception_type: &str, message: &str) -> Bytes {
    let headers = [
        (":exception-type", exception_type),
        (":content-type", "application/json"),
        (":message-type", "exception"),
    ];
    let Some(mut w) = FrameWriter::new(message.len() + 16, headers) else {
        return Bytes::new();
    };
    if serde_json::to_writer(&mut w.buf, &serde_json::json!({ "message": message })).is_err() {
        return Bytes::new();
    }
    w.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};

    use super::*;

    fn smithy(headers: [(&'static str, &str); 3], payload: &[u8]) -> Vec<u8> {
        let mut m = Message::new(Bytes::copy_from_slice(payload));
        for (name, value) in headers {
            m = m.add_header(Header::new(
                name,
                HeaderValue::String(value.to_owned().into()),
            ));
        }
        let mut buf = Vec::new();
        write_message_to(&m, &mut buf).unwrap();
        buf
    }

    #[test]
    fn frames_are_the_bytes_smithy_writes() {
        let value =
            serde_json::json!({ "b": [1, 2.5, null], "a": "x\"y\u{e9}", "c": { "d": true } });
        let json = serde_json::to_vec(&value).unwrap();
        for kind in [
            EventType::Chunk,
            EventType::Trace,
            EventType::ReturnControl,
            EventType::Files,
        ] {
            let expected = smithy(event_headers(kind), &json);
            assert_eq!(&event(kind, &json)[..], &expected[..]);
        }
        let big = "z".repeat(70_000);
        let expected = smithy(event_headers(EventType::Trace), big.as_bytes());
        assert_eq!(&event(EventType::Trace, big.as_bytes())[..], &expected[..]);
        let headers = [
            (":exception-type", "throttlingException"),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ];
        let expected = smithy(headers, br#"{"message":"slow \"down\""}"#);
        assert_eq!(
            &exception("throttlingException", "slow \"down\"")[..],
            &expected[..]
        );
    }

    #[test]
    fn a_header_value_beyond_the_format_gives_an_empty_frame() {
        assert!(exception(&"e".repeat(40_000), "m").is_empty());
        assert!(!exception(&"e".repeat(30_000), "m").is_empty());
    }
}
