//! One Binance WebSocket connection on combined streams: connects, answers pings, notices a dead
//! connection (nothing at all, not even a ping, for `idle_timeout`) and Binance's
//! `serverShutdown` notice, and forwards every event to the live source with its connection id.
//! Reconnecting, rotating and de-duplicating are the live source's business.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// What a connection reports.
#[derive(Debug)]
pub enum StreamMessage {
    Connected {
        conn: u64,
    },
    Event {
        conn: u64,
        stream: String,
        data: Box<RawValue>,
    },
    /// Binance announced it will close this connection soon.
    ServerShutdown {
        conn: u64,
    },
    Closed {
        conn: u64,
        reason: String,
    },
}

#[derive(Deserialize)]
struct Combined {
    stream: String,
    data: Box<RawValue>,
}

#[derive(Deserialize)]
struct EventType<'a> {
    #[serde(borrow, default)]
    e: Option<&'a str>,
}

/// The combined-stream URL for `streams` under `base` (e.g. `wss://stream.binance.com:9443`).
pub fn combined_url(base: &str, streams: &[String]) -> String {
    format!(
        "{}/stream?streams={}",
        base.trim_end_matches('/'),
        streams.join("/")
    )
}

/// Runs one connection until it closes; everything it sees goes to `tx`.
pub async fn run_connection(
    url: String,
    conn: u64,
    idle_timeout: Duration,
    tx: mpsc::Sender<StreamMessage>,
) {
    let reason = match connect_and_read(&url, conn, idle_timeout, &tx).await {
        Ok(r) => r,
        Err(e) => e,
    };
    let _ = tx.send(StreamMessage::Closed { conn, reason }).await;
}

async fn connect_and_read(
    url: &str,
    conn: u64,
    idle_timeout: Duration,
    tx: &mpsc::Sender<StreamMessage>,
) -> Result<String, String> {
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .map_err(|_| "connecting timed out".to_string())?
    .map_err(|e| format!("cannot connect: {e}"))?;
    if tx.send(StreamMessage::Connected { conn }).await.is_err() {
        return Ok("source ended".into());
    }
    loop {
        let frame = match tokio::time::timeout(idle_timeout, ws.next()).await {
            Err(_) => {
                let _ = ws.close(None).await;
                return Err(format!(
                    "no data and no ping for {idle_timeout:?}: connection presumed dead"
                ));
            }
            Ok(None) => return Err("connection closed".into()),
            Ok(Some(Err(e))) => return Err(format!("connection failed: {e}")),
            Ok(Some(Ok(f))) => f,
        };
        match frame {
            Message::Text(text) => {
                let msg = match serde_json::from_str::<Combined>(text.as_str()) {
                    Ok(c) => {
                        let shutdown = c.stream.ends_with("serverShutdown")
                            || serde_json::from_str::<EventType>(c.data.get())
                                .ok()
                                .and_then(|e| e.e)
                                == Some("serverShutdown");
                        if shutdown {
                            StreamMessage::ServerShutdown { conn }
                        } else {
                            StreamMessage::Event {
                                conn,
                                stream: c.stream,
                                data: c.data,
                            }
                        }
                    }
                    Err(_) => match serde_json::from_str::<EventType>(text.as_str())
                        .ok()
                        .and_then(|e| e.e)
                    {
                        Some("serverShutdown") => StreamMessage::ServerShutdown { conn },
                        _ => {
                            tracing::debug!(conn, message = %text.as_str(), "ignoring an unexpected WebSocket message");
                            continue;
                        }
                    },
                };
                if tx.send(msg).await.is_err() {
                    return Ok("source ended".into());
                }
            }
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
    }
}

/// Binance allows 300 connection attempts per 5 minutes per IP; this keeps us under it.
#[derive(Debug)]
pub struct ConnectionAttempts {
    limit: usize,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl ConnectionAttempts {
    pub fn new(limit: usize, window: Duration) -> Self {
        ConnectionAttempts {
            limit,
            window,
            recent: VecDeque::new(),
        }
    }

    /// How long to wait before the next attempt is allowed; records the attempt.
    pub fn reserve(&mut self) -> Duration {
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            self.recent.pop_front();
        }
        let wait = if self.recent.len() >= self.limit {
            self.window
                .saturating_sub(now.duration_since(self.recent[self.recent.len() - self.limit]))
        } else {
            Duration::ZERO
        };
        self.recent.push_back(now + wait);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_attempts_are_limited_per_window() {
        let mut a = ConnectionAttempts::new(3, Duration::from_secs(300));
        assert_eq!(a.reserve(), Duration::ZERO);
        assert_eq!(a.reserve(), Duration::ZERO);
        assert_eq!(a.reserve(), Duration::ZERO);
        let w = a.reserve();
        assert!(
            w > Duration::from_secs(290) && w <= Duration::from_secs(300),
            "{w:?}"
        );
    }

    #[test]
    fn combined_urls() {
        assert_eq!(
            combined_url(
                "wss://stream.binance.com:9443/",
                &["btcusdt@trade".into(), "ethusdt@trade".into()]
            ),
            "wss://stream.binance.com:9443/stream?streams=btcusdt@trade/ethusdt@trade"
        );
    }
}
