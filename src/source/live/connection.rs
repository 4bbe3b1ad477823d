//! One WebSocket connection, whichever the venue: connects, sends the plan's subscriptions
//! (paced), answers pings, sends the venue's keep-alive, notices a dead connection (nothing at
//! all, not even a ping, for `idle_timeout`) and the venue's shutdown notice, and forwards
//! every event to the live source with its connection id. The venue's [`Grammar`] reads the
//! frames; reconnecting, rotating and de-duplicating are the live source's business.
//!
//! Frames are handed on in bursts: after a wake-up the reader takes every frame already read
//! (up to [`MAX_BURST`]) and sends them as one message, with one look at the clock, so that a
//! busy stream costs one channel send and one clock read a burst rather than a frame.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::venue::live::wire::{FramePart, Grammar, Read, StreamMessage, StreamPlan};

/// The most messages one burst carries (a busy connection's frames read in one wake-up).
pub const MAX_BURST: usize = 64;

/// Messages of one connection, in the order it read them.
pub type Burst = Vec<StreamMessage>;

/// What a connection read and the live source has not taken yet. The reader keeps reading (and
/// answering pings) while the source is busy with a backfill or a paced snapshot; once more
/// than [`MAX_WS_BACKLOG`](crate::bounds::MAX_WS_BACKLOG) waits, the connection is given up
/// like a dropped one (what it carried is backfilled where the venue allows), instead of the
/// reader stopping until the venue closes it for pongs that never came.
struct Outbox {
    held: VecDeque<Burst>,
    bytes: usize,
}

/// Why the reader stops.
enum Stop {
    SourceEnded,
    Overrun(usize),
}

impl Outbox {
    fn new() -> Self {
        Outbox {
            held: VecDeque::new(),
            bytes: 0,
        }
    }

    fn size(burst: &Burst) -> usize {
        burst
            .iter()
            .map(|msg| {
                64 + match msg {
                    StreamMessage::Event { stream, data, .. } => {
                        stream.get().len() + data.get().len()
                    }
                    _ => 0,
                }
            })
            .sum()
    }

    /// Hands `burst` on at once if the source has room and nothing waits before it; holds it
    /// otherwise.
    fn push(&mut self, tx: &mpsc::Sender<Burst>, burst: Burst) -> Result<(), Stop> {
        if burst.is_empty() {
            return Ok(());
        }
        let burst = if self.held.is_empty() {
            match tx.try_send(burst) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(burst)) => burst,
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(Stop::SourceEnded),
            }
        } else {
            burst
        };
        self.bytes += Self::size(&burst);
        self.held.push_back(burst);
        if self.bytes > crate::bounds::MAX_WS_BACKLOG {
            return Err(Stop::Overrun(self.bytes));
        }
        Ok(())
    }

    fn pop(&mut self) -> Option<Burst> {
        let burst = self.held.pop_front()?;
        self.bytes -= Self::size(&burst);
        Some(burst)
    }
}

impl Stop {
    fn reason(self) -> Result<String, String> {
        match self {
            Stop::SourceEnded => Ok("source ended".into()),
            Stop::Overrun(bytes) => Err(format!(
                "the loader fell {} behind this connection (it kept reading and answering pings meanwhile): \
                 giving the connection up; what it carried is backfilled where the venue allows",
                crate::bounds::human(bytes)
            )),
        }
    }
}

/// Runs one connection until it closes; everything it sees goes to `tx`.
pub async fn run_connection(
    plan: StreamPlan,
    grammar: Arc<dyn Grammar>,
    conn: u64,
    idle_timeout: Duration,
    tx: mpsc::Sender<Burst>,
) {
    let mut outbox = Outbox::new();
    let reason =
        match connect_and_read(&plan, &*grammar, conn, idle_timeout, &tx, &mut outbox).await {
            Ok(r) => r,
            Err(e) => e,
        };
    // What the connection read before it ended is delivered before it is reported closed.
    while let Some(burst) = outbox.pop() {
        if tx.send(burst).await.is_err() {
            return;
        }
    }
    let _ = tx.send(vec![StreamMessage::Closed { conn, reason }]).await;
}

/// The message an event of `stream` becomes, its parts shared with `frame`.
fn event_message(conn: u64, frame: &Utf8Bytes, stream: &str, data: &str) -> StreamMessage {
    StreamMessage::Event {
        conn,
        stream: FramePart::of(frame, stream),
        data: FramePart::of(frame, data),
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect_and_read(
    plan: &StreamPlan,
    grammar: &dyn Grammar,
    conn: u64,
    idle_timeout: Duration,
    tx: &mpsc::Sender<Burst>,
    outbox: &mut Outbox,
) -> Result<String, String> {
    // wss:// with the process's shared connector (a new one per connection would parse the
    // system's CA bundle again); ws:// needs none.
    let tls = if plan
        .url
        .get(..4)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("wss:"))
    {
        Some(tokio_tungstenite::Connector::NativeTls(
            crate::tls::connector()?,
        ))
    } else {
        None
    };
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async_tls_with_config(
            plan.url.as_str(),
            Some(
                WebSocketConfig::default()
                    .max_message_size(Some(crate::bounds::MAX_WS_MESSAGE))
                    .max_frame_size(Some(crate::bounds::MAX_WS_MESSAGE)),
            ),
            false,
            tls,
        ),
    )
    .await
    .map_err(|_| "connecting timed out".to_string())?
    .map_err(|e| format!("cannot connect: {e}"))?;
    // Subscriptions go out paced; their replies are read (and pings answered) in the loop below.
    let mut pending_subscribes = plan.subscribe.iter().peekable();
    let mut next_subscribe = Instant::now();
    if pending_subscribes.peek().is_none() {
        if let Err(stop) = outbox.push(tx, vec![StreamMessage::Connected { conn }]) {
            return stop.reason();
        }
    }
    let mut subscriptions = Subscriptions {
        unanswered: plan.subscribe.len(),
        connected: plan.subscribe.is_empty(),
    };
    // Liveness: any frame counts. A quiet stream (futures servers ping only every 3 minutes, an
    // illiquid symbol's liquidations may not come for longer) is probed with a ping of our own
    // halfway through the idle timeout; only a connection that answers nothing is dead.
    let mut last_frame = Instant::now();
    let mut probed = false;
    // The venue's own keep-alive, where it wants one from the client.
    let keepalive = grammar.keepalive();
    let mut next_keepalive = keepalive.map(|k| Instant::now() + k.every);
    // One timer for everything the connection does on its own (the next subscription, the
    // keep-alive, the probe, giving up), re-armed only when it fires: a timer made and dropped
    // for every frame would cost a busy stream more than reading the frame.
    let next_due = |pending: bool,
                    next_subscribe: Instant,
                    next_keepalive: Option<Instant>,
                    last_frame: Instant,
                    probed: bool| {
        let mut until = if probed {
            last_frame + idle_timeout
        } else {
            last_frame + idle_timeout / 2
        };
        if pending {
            until = until.min(next_subscribe);
        }
        if let Some(at) = next_keepalive {
            until = until.min(at);
        }
        until
    };
    let timer = tokio::time::sleep_until(next_subscribe);
    tokio::pin!(timer);
    loop {
        let next = tokio::select! {
            biased;
            permit = tx.reserve(), if !outbox.held.is_empty() => {
                match (permit, outbox.pop()) {
                    (Ok(permit), Some(burst)) => permit.send(burst),
                    (Err(_), _) => return Ok("source ended".into()),
                    (Ok(_), None) => {}
                }
                continue;
            }
            () = &mut timer => {
                let now = Instant::now();
                if pending_subscribes.peek().is_some() && now >= next_subscribe {
                    let text = pending_subscribes.next().expect("peeked");
                    ws.send(Message::text(text.as_str()))
                        .await
                        .map_err(|e| format!("cannot subscribe: {e}"))?;
                    next_subscribe = Instant::now() + plan.spacing;
                }
                if let (Some(k), Some(at)) = (keepalive, next_keepalive) {
                    if now >= at {
                        ws.send(Message::text(k.text))
                            .await
                            .map_err(|e| format!("cannot send the keep-alive: {e}"))?;
                        next_keepalive = Some(Instant::now() + k.every);
                    }
                }
                if now >= last_frame + idle_timeout {
                    let _ = ws.close(None).await;
                    return Err(format!(
                        "no data, no ping and no answer to ours for {idle_timeout:?}: connection presumed dead"
                    ));
                }
                if !probed && now >= last_frame + idle_timeout / 2 {
                    ws.send(Message::Ping(b"keepalive".to_vec().into()))
                        .await
                        .map_err(|e| format!("cannot ping: {e}"))?;
                    probed = true;
                }
                let pending = pending_subscribes.peek().is_some();
                timer
                    .as_mut()
                    .reset(next_due(pending, next_subscribe, next_keepalive, last_frame, probed));
                continue;
            }
            next = ws.next() => next,
        };
        let mut burst = Burst::with_capacity(16);
        let read = read_burst(next, &mut ws, grammar, conn, &mut subscriptions, &mut burst).await;
        // What the burst read goes to the source even when the connection ended after it.
        if let Err(stop) = outbox.push(tx, burst) {
            return stop.reason();
        }
        read?;
        last_frame = Instant::now();
        probed = false;
    }
}

/// The answers the plan's subscriptions are still waiting for.
struct Subscriptions {
    unanswered: usize,
    /// A venue may answer a request more than once (one answer per topic): connected once.
    connected: bool,
}

/// Reads `first` and every frame already read after it (up to [`MAX_BURST`]) into `burst`,
/// answering pings on the way. `Err` is why the connection ended; what was read before that is
/// in `burst` all the same.
async fn read_burst(
    first: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ws: &mut Ws,
    grammar: &dyn Grammar,
    conn: u64,
    subscriptions: &mut Subscriptions,
    burst: &mut Burst,
) -> Result<(), String> {
    let mut next = first;
    let mut taken = 0;
    loop {
        let frame = match next {
            None => return Err("connection closed".into()),
            Some(Err(e)) => return Err(format!("connection failed: {e}")),
            Some(Ok(f)) => f,
        };
        match frame {
            Message::Text(text) => match grammar.read(text.as_str()) {
                Read::Event { stream, data } => {
                    burst.push(event_message(conn, &text, &stream, data))
                }
                Read::Answered => {
                    subscriptions.unanswered = subscriptions.unanswered.saturating_sub(1);
                    if subscriptions.unanswered == 0 && !subscriptions.connected {
                        subscriptions.connected = true;
                        burst.push(StreamMessage::Connected { conn });
                    }
                }
                Read::Refused(e) => return Err(format!("subscription refused: {e}")),
                Read::Shutdown => burst.push(StreamMessage::ServerShutdown { conn }),
                Read::Other => {
                    tracing::debug!(conn, message = %text.as_str(), "ignoring an unexpected WebSocket message");
                }
            },
            Message::Ping(payload) => {
                // Answer at once with the same payload (Binance closes after a minute without).
                if let Err(e) = ws.send(Message::Pong(payload)).await {
                    return Err(format!("cannot answer a ping: {e}"));
                }
            }
            Message::Close(frame) => {
                return Err(match frame {
                    Some(f) => format!("closed by the server ({} {})", f.code, f.reason),
                    None => "closed by the server".into(),
                })
            }
            _ => {}
        }
        taken += 1;
        if taken == MAX_BURST {
            break;
        }
        // A frame already read is taken now; polling with no waker is fine, since the caller
        // polls the stream with its own before it waits.
        match ws.next().now_or_never() {
            Some(n) => next = n,
            None => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that sends `events` aggTrade events at once, then pings every 20 ms and reports
    /// each pong it gets on the returned channel.
    async fn pinging_server(events: u64) -> (String, mpsc::UnboundedReceiver<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "ws://{}/stream?streams=x@aggTrade",
            listener.local_addr().unwrap()
        );
        let (pongs, pong_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            for a in 0..events {
                let text =
                    format!(r#"{{"stream":"x@aggTrade","data":{{"e":"aggTrade","a":{a}}}}}"#);
                ws.send(Message::text(text)).await.unwrap();
            }
            let mut ping = tokio::time::interval(Duration::from_millis(20));
            loop {
                tokio::select! {
                    _ = ping.tick() => {
                        if ws.send(Message::Ping(b"p".to_vec().into())).await.is_err() {
                            return;
                        }
                    }
                    frame = ws.next() => match frame {
                        Some(Ok(Message::Pong(_))) => {
                            let _ = pongs.send(());
                        }
                        Some(Ok(_)) => {}
                        _ => return,
                    },
                }
            }
        });
        (url, pong_rx)
    }

    /// However long the live source takes to come back for the next event (here: it takes
    /// nothing until the server has had pongs), the reader keeps answering pings, and then
    /// delivers every event it held, in order.
    #[tokio::test]
    async fn pings_are_answered_while_the_source_is_busy() {
        let events = 500;
        let (url, mut pongs) = pinging_server(events).await;
        let (tx, mut rx) = mpsc::channel(1);
        let plan = StreamPlan {
            url,
            subscribe: Vec::new(),
            spacing: Duration::ZERO,
        };
        let grammar = Arc::new(crate::venue::binance::live::BinanceGrammar);
        let reader = tokio::spawn(run_connection(
            plan,
            grammar,
            7,
            Duration::from_secs(30),
            tx,
        ));
        // The channel holds one message: the reader is 500 events ahead of a source that takes
        // nothing. Pongs must keep coming all the same.
        for _ in 0..5 {
            tokio::time::timeout(Duration::from_secs(10), pongs.recv())
                .await
                .expect("a pong while the source was busy")
                .expect("the server runs");
        }
        // However the reader grouped them into bursts: Connected, then every event in order.
        let mut messages = Vec::new();
        while messages.len() < 1 + events as usize {
            messages.extend(rx.recv().await.expect("the reader runs"));
        }
        assert!(matches!(messages[0], StreamMessage::Connected { conn: 7 }));
        for (a, msg) in messages[1..].iter().enumerate() {
            match msg {
                StreamMessage::Event { data, .. } => {
                    let v: serde_json::Value = serde_json::from_str(data.get()).unwrap();
                    assert_eq!(v["a"], a);
                }
                other => panic!("event {a}: {other:?}"),
            }
        }
        reader.abort();
    }
}
