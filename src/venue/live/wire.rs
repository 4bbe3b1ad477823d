//! What a WebSocket connection carries, whichever the venue: the plan it opens with
//! ([`StreamPlan`]), the venue's frame grammar ([`Grammar`]: which text frame is an event of
//! which stream, an answer, a refusal, a shutdown notice) and its keep-alive, and what the
//! connection reports to the live source ([`StreamMessage`], events as [`FramePart`]s of the
//! frame they came in).

use std::borrow::Cow;
use std::time::Duration;

use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A piece of the text frame it came in, shared rather than copied: an event's stream name or
/// its JSON.
#[derive(Debug, Clone)]
pub struct FramePart {
    frame: Utf8Bytes,
    start: usize,
    end: usize,
}

impl FramePart {
    /// `part` of `frame`, where it is a slice of the frame's text; a copy otherwise (a value
    /// with escapes that the parser had to rewrite).
    pub fn of(frame: &Utf8Bytes, part: &str) -> FramePart {
        let base = frame.as_str().as_ptr() as usize;
        let at = part.as_ptr() as usize;
        if at >= base && at + part.len() <= base + frame.len() {
            FramePart {
                frame: frame.clone(),
                start: at - base,
                end: at - base + part.len(),
            }
        } else {
            FramePart::from(part.to_string())
        }
    }

    pub fn get(&self) -> &str {
        &self.frame.as_str()[self.start..self.end]
    }
}

impl From<String> for FramePart {
    fn from(text: String) -> FramePart {
        let end = text.len();
        FramePart {
            frame: Utf8Bytes::from(text),
            start: 0,
            end,
        }
    }
}

/// What a connection reports.
#[derive(Debug)]
pub enum StreamMessage {
    /// Every subscription of the connection was acknowledged (or none was needed).
    Connected {
        conn: u64,
    },
    Event {
        conn: u64,
        stream: FramePart,
        data: FramePart,
    },
    /// The venue announced it will close this connection soon.
    ServerShutdown {
        conn: u64,
    },
    Closed {
        conn: u64,
        reason: String,
    },
}

/// How to open a connection on a set of streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPlan {
    pub url: String,
    /// Text frames to send after connecting (subscriptions), each answered once.
    pub subscribe: Vec<String>,
    /// The least time between two of them (the venue's limit on incoming messages).
    pub spacing: Duration,
}

/// A text frame as the venue's grammar reads it.
#[derive(Debug, PartialEq, Eq)]
pub enum Read<'t> {
    /// An event of `stream`; `data` is what the feed parses (a slice of the frame, or all of
    /// it).
    Event { stream: Cow<'t, str>, data: &'t str },
    /// The answer to one of the plan's subscriptions.
    Answered,
    /// A subscription was refused, or the venue reports an error: the connection is useless.
    Refused(String),
    /// The venue will close the connection soon.
    Shutdown,
    /// Anything else (an answer to a keep-alive, an unknown message).
    Other,
}

/// A keep-alive the venue wants from the client: `text` sent every `every` (Bybit's
/// `{"op":"ping"}`, OKX's `ping`). Venues that ping the client themselves have none; pings of
/// either kind are always answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    pub every: Duration,
    pub text: &'static str,
}

/// A venue's frames.
pub trait Grammar: Send + Sync + 'static {
    fn read<'t>(&self, text: &'t str) -> Read<'t>;

    fn keepalive(&self) -> Option<Keepalive> {
        None
    }
}
