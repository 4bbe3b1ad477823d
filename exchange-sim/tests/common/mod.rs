//! Helpers shared by the simulator's test suites: starting a server, raw HTTP/1.1 requests on
//! fresh connections, and WebSocket clients. Each suite uses its own subset.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use exchange_sim::{SimConfig, SimServer};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub async fn start(cfg: SimConfig) -> SimServer {
    SimServer::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Puts the server's clock at 12:32:30 UTC of the current day and returns that time: every
/// day, hour, 5-minute and minute boundary is at least 30 s away, so what a test computes from
/// "now" holds while it runs (the clock still runs at the wall clock's speed).
pub fn pin_mid_day(server: &SimServer) -> i64 {
    const DAY: i64 = 86_400_000;
    let at = now_ms().div_euclid(DAY) * DAY + (12 * 3_600 + 32 * 60 + 30) * 1_000;
    server.clock().set_now_ms(at);
    at
}

/// Jumps the server's clock to 20 ms after the next multiple of `window_ms` since the epoch
/// (a weight window's start) instead of waiting for it.
pub fn jump_to_window_start(server: &SimServer, window_ms: i64) {
    let now = server.clock().now_ms();
    let ahead = window_ms - now.rem_euclid(window_ms) + 20;
    server.clock().advance(Duration::from_millis(ahead as u64));
}

/// Waits until `cond` holds, checking every 10 ms; panics naming `what` after 10 s.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within 10 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The status code and headers of a raw HTTP/1.1 response head (without the blank line).
pub fn parse_head(head: &str) -> (u16, Vec<(String, String)>) {
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers = lines
        .map(|l| {
            let (k, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {l:?}"));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    (status, headers)
}

/// An HTTP response as received.
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_u64(&self, name: &str) -> u64 {
        self.header(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .parse()
            .unwrap()
    }

    pub fn content_length(&self) -> usize {
        self.header_u64("content-length") as usize
    }

    /// The request weight used in the current window (`x-mbx-used-weight-1m`).
    pub fn used(&self) -> u64 {
        self.header_u64("x-mbx-used-weight-1m")
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    /// Binance's error code in the body.
    pub fn code(&self) -> i64 {
        self.json()["code"].as_i64().unwrap()
    }
}

/// One request on a fresh connection. The body is whatever arrived before the server closed
/// the connection, so a cut-off download comes back shorter than its `Content-Length`.
pub async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&raw)));
    let (status, headers) = parse_head(std::str::from_utf8(&raw[..end]).unwrap());
    Resp {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

/// A GET of `path` without extra headers.
pub async fn get_path(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[]).await
}

/// A plain REST GET that must answer 200 with JSON.
pub async fn rest(addr: SocketAddr, path: &str) -> Value {
    let r = get_path(addr, path).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The next text message as JSON (pings and pongs skipped), or `None` when the connection
/// ended or nothing came within `within`.
pub async fn next_json(ws: &mut Client, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                return Some(serde_json::from_str(t.as_str()).unwrap());
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => {}
            Ok(Some(Ok(Message::Binary(_)))) => panic!("binary message"),
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
        }
    }
}

/// Every text message received during `d`.
pub async fn collect(ws: &mut Client, d: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + d;
    let mut out = Vec::new();
    while let Some(v) = next_json(ws, deadline - tokio::time::Instant::now()).await {
        out.push(v);
    }
    out
}

pub async fn send_json(ws: &mut Client, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// Sends a request and returns the answer (the next message with an `id`).
pub async fn reply(ws: &mut Client, v: Value) -> Value {
    send_json(ws, v).await;
    loop {
        let m = next_json(ws, Duration::from_secs(2)).await.unwrap();
        // Spot errors to a request without a usable id carry no `id`, only `code` and `msg`.
        if m.get("id").is_some() || m.get("code").is_some() {
            return m;
        }
    }
}

/// The keys of a JSON object, sorted.
pub fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

pub fn sorted(list: &[&'static str]) -> Vec<&'static str> {
    let mut v = list.to_vec();
    v.sort_unstable();
    v
}
