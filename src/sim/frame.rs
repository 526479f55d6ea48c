//! AWS event-stream frames as Bedrock sends them: one `Message` per event or exception, encoded with
//! `aws_smithy_eventstream`. Owns the header names and the frame bytes; knows nothing of HTTP.

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
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

fn header(name: &'static str, value: &str) -> Header {
    Header::new(name, HeaderValue::String(value.to_owned().into()))
}

fn encode(message: &Message) -> Bytes {
    let mut buf = Vec::with_capacity(message.payload().len() + 128);
    // Writing to a Vec only fails when a header or payload exceeds the format's limits, which
    // the simulator's own payloads never do; an empty frame would surface as a client error.
    if write_message_to(message, &mut buf).is_err() {
        buf.clear();
    }
    Bytes::from(buf)
}

/// An event frame: `:message-type=event`, `:event-type`, `:content-type=application/json`.
pub fn event(kind: EventType, json: &[u8]) -> Bytes {
    let message = Message::new(Bytes::copy_from_slice(json))
        .add_header(header(":event-type", kind.as_str()))
        .add_header(header(":content-type", "application/json"))
        .add_header(header(":message-type", "event"));
    encode(&message)
}

/// An exception frame: `:message-type=exception`, `:exception-type` (camelCase, as Bedrock sends
/// it), payload `{"message": ...}`. The stream ends after it.
pub fn exception(exception_type: &str, message: &str) -> Bytes {
    let body = serde_json::json!({ "message": message }).to_string();
    let message = Message::new(Bytes::from(body.into_bytes()))
        .add_header(header(":exception-type", exception_type))
        .add_header(header(":content-type", "application/json"))
        .add_header(header(":message-type", "exception"));
    encode(&message)
}
