//! The running simulator: the hyper 1 HTTP/1.1 server and accept loop, the per-request pipeline
//! (storm → rate limiter → faults → endpoint), response headers, statistics and the `/sim/*`
//! control endpoints. WebSocket upgrades are handed to [`crate::ws`] and their sessions run in
//! the task of the connection they came on; bulk-archive requests (`/data/…`) go to
//! [`crate::archive`], outside the rate limiter and the REST faults.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, RANGE, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::api::{self, ApiError, CountLimit, Ctx, Endpoint};
use crate::archive::{self, Archive, CutStream, FileBody};
use crate::clock::SimClock;
use crate::data::Data;
use crate::fmt::push_i64;
use crate::gauge::Gauge;
use crate::limiter::{CountLimiter, Limiter, Verdict, WindowDesc};
use crate::market::SimMarket;
use crate::query::Query;
use crate::ws::{self, Control, Hub};
use crate::{ArchiveFaults, Faults, MarketStats, SimConfig, SimStats, Storm, WsFaults};

/// Response bodies: whole ones for REST, `/sim/*`, WebSocket handshakes and small archive
/// answers, streamed ones for archive zips.
pub(crate) type Body = Either<Full<Bytes>, FileBody>;

/// The error a request future returns to make hyper close the connection without answering.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

/// The rate limits of one market: its weight budget and, on futures, the request-count limits
/// of `fundingRate` and `/futures/data/*`.
struct MarketLimits {
    weight: Limiter,
    funding: CountLimiter,
    futures_data: CountLimiter,
    stats: MarketStats,
}

/// Mutable state behind one lock: every request touches it briefly.
struct State {
    /// Indexed by [`SimMarket::index`].
    markets: [MarketLimits; 3],
    faults: Faults,
    data: Arc<Data>,
    storm_left: u32,
    data_requests: u64,
    stats: SimStats,
}

struct Shared {
    /// Indexed by [`SimMarket::index`].
    weight_limits: [u32; 3],
    funding_limit: (u32, Duration),
    futures_data_limit: (u32, Duration),
    window: WindowDesc,
    window_header: HeaderName,
    spacing: i64,
    listed_at: i64,
    /// [`SimConfig::futures_agg_trades_horizon`], in ms.
    futures_agg_horizon_ms: Option<i64>,
    state: Mutex<State>,
    /// Spot's WebSocket connections.
    ws: Arc<Hub>,
    /// Both futures markets' WebSocket connections, with their own [`WsFaults`].
    fws: Arc<Hub>,
    archive: Archive,
    /// Bybit's REST API under `/bybit`.
    bybit: crate::bybit::BybitVenue,
    /// Bybit's archive of trades under `/bybit-archive`.
    bybit_archive: crate::bybit_archive::BybitArchive,
    /// OKX's REST API under `/okx`.
    okx: crate::okx::OkxVenue,
    /// OKX's archive of trades under `/okx-archive`.
    okx_archive: crate::okx_archive::OkxArchive,
    /// Bybit's public WebSocket under `/bybit-ws`.
    bybit_ws: crate::bybit_ws::BybitWs,
    /// OKX's public WebSocket under `/okx-ws`.
    okx_ws: Arc<crate::okx_ws::OkxWsHub>,
    /// REST requests being answered.
    rest_at_once: Arc<Gauge>,
    clock: SimClock,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent counters; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_faults(&self, faults: Faults) {
        let data = Arc::new(Data::new(
            self.spacing,
            self.listed_at,
            faults.missing_agg_ids.clone(),
        ));
        let mut st = self.lock();
        st.storm_left = faults.storm.as_ref().map_or(0, |s| s.count);
        st.data_requests = 0;
        st.data = data.clone();
        st.faults = faults;
        self.ws.set_data(data.clone());
        self.okx_ws.set_data(data.clone());
        self.bybit_ws.set_data(data.clone());
        self.fws.set_data(data);
    }

    /// Sends `c` to the sessions of every market; returns how many got it.
    fn broadcast(&self, c: Control) -> usize {
        self.ws.broadcast(c) + self.fws.broadcast(c)
    }
}

/// What the requests of one TCP connection share: the peer's IP, a WebSocket upgrade
/// accepted on it, to be served once hyper hands the connection over, and the flag that cuts
/// the connection short (a truncated archive download).
struct Conn {
    peer: IpAddr,
    /// The upgrade and the hub (spot's or the futures') whose session it becomes.
    pending: Mutex<Option<(Arc<Hub>, ws::Pending)>>,
    /// An OKX WebSocket upgrade accepted on it ([`crate::okx_ws`]).
    okx_pending: Mutex<Option<crate::okx_ws::Pending>>,
    cut: Arc<AtomicBool>,
}

/// A running simulated exchange. Dropping it stops the server too (without waiting).
pub struct SimServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl SimServer {
    /// Binds `addr` (port 0 picks a free port) and serves on the current tokio runtime.
    pub async fn start(cfg: SimConfig, addr: SocketAddr) -> std::io::Result<SimServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let window = WindowDesc::new(cfg.weight_window);
        let window_header = HeaderName::from_bytes(window.header_name().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let weight_limits = [
            cfg.weight_limit,
            cfg.usdm_weight_limit,
            cfg.coinm_weight_limit,
        ];
        let markets = weight_limits.map(|limit| MarketLimits {
            weight: Limiter::new(limit, &window, cfg.strikes_before_ban, cfg.ban_duration),
            funding: CountLimiter::new(cfg.funding_rate_limit, cfg.funding_rate_window),
            futures_data: CountLimiter::new(cfg.futures_data_limit, cfg.futures_data_window),
            stats: MarketStats::default(),
        });
        let clock = SimClock::default();
        let hub = Arc::new(Hub::new(
            cfg.ws.clone(),
            Arc::new(cfg.data()),
            clock.clone(),
        ));
        let fws = Arc::new(Hub::new(
            cfg.futures_ws.clone(),
            Arc::new(cfg.data()),
            clock.clone(),
        ));
        let shared = Arc::new(Shared {
            weight_limits,
            funding_limit: (cfg.funding_rate_limit, cfg.funding_rate_window),
            futures_data_limit: (cfg.futures_data_limit, cfg.futures_data_window),
            window,
            window_header,
            spacing: cfg.agg_trade_spacing_ms,
            listed_at: cfg.listed_at_ms,
            futures_agg_horizon_ms: cfg
                .futures_agg_trades_horizon
                .map(|d| d.as_millis().min(i64::MAX as u128) as i64),
            state: Mutex::new(State {
                markets,
                faults: Faults::default(),
                data: Arc::new(cfg.data()),
                storm_left: 0,
                data_requests: 0,
                stats: SimStats::default(),
            }),
            ws: hub,
            fws,
            archive: Archive::new(cfg.listed_at_ms, cfg.archive.clone()),
            bybit: Default::default(),
            bybit_archive: Default::default(),
            okx: Default::default(),
            okx_archive: Default::default(),
            bybit_ws: crate::bybit_ws::BybitWs::new(clock.clone()),
            okx_ws: Arc::new(crate::okx_ws::OkxWsHub::new(
                Default::default(),
                Arc::new(cfg.data()),
                clock.clone(),
            )),
            rest_at_once: Arc::default(),
            clock,
        });
        shared.set_faults(cfg.faults);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, shared.clone(), stopped));
        tracing::info!(%addr, "exchange simulator listening");
        Ok(SimServer {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The simulator's clock: every "now" of REST, streams and archives. Set or advance it
    /// instead of waiting for time to pass.
    pub fn clock(&self) -> SimClock {
        self.shared.clock.clone()
    }

    /// `http://IP:PORT` of the server.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT/bybit`: Bybit's REST base (append `/v5/market/kline`, …), Bybit's
    /// `https://api.bybit.com`; see [`crate::bybit`].
    pub fn bybit_url(&self) -> String {
        format!("http://{}/bybit", self.addr)
    }

    /// The Bybit WebSocket venue (its `SimServer` methods are in [`crate::bybit_ws`]).
    pub(crate) fn bybit_ws(&self) -> &crate::bybit_ws::BybitWs {
        &self.shared.bybit_ws
    }

    /// `http://IP:PORT/okx`: OKX's REST base (append `/api/v5/market/history-candles`, …),
    /// OKX's `https://www.okx.com`; see [`crate::okx`].
    pub fn okx_url(&self) -> String {
        format!("http://{}/okx", self.addr)
    }

    /// The OKX WebSocket venue (its `SimServer` methods are in [`crate::okx_ws`]).
    pub(crate) fn okx_ws_hub(&self) -> &crate::okx_ws::OkxWsHub {
        &self.shared.okx_ws
    }

    /// The next `requests` to OKX's history-candles are answered HTTP 429, code 50011, as when
    /// other clients on the same IP spent the endpoint's limit.
    pub fn spend_okx_candle_limit_elsewhere(&self, requests: u32) {
        self.shared.okx.spend_candle_limit_elsewhere(requests);
    }

    /// `http://IP:PORT/bybit-archive`: Bybit's archive of trades, Bybit's
    /// `https://public.bybit.com`; see [`crate::bybit_archive`].
    pub fn bybit_archive_url(&self) -> String {
        format!("http://{}/bybit-archive", self.addr)
    }

    /// `http://IP:PORT/okx-archive`: OKX's archive of trades, OKX's `https://static.okx.com`;
    /// see [`crate::okx_archive`].
    pub fn okx_archive_url(&self) -> String {
        format!("http://{}/okx-archive", self.addr)
    }

    /// Damages the next `downloads` downloads of the OKX archive file named `name` (e.g.
    /// `BTC-USDT-trades-2024-01-02.zip`); its ETag stays the true file's.
    pub fn corrupt_okx_file(&self, name: &str, downloads: u32) {
        self.shared.okx_archive.corrupt(name, downloads);
    }

    /// Damages the next `downloads` downloads of the Bybit archive file named `name` (e.g.
    /// `BTCUSDT2024-01-02.csv.gz`); its ETag stays the true file's.
    pub fn corrupt_bybit_file(&self, name: &str, downloads: u32) {
        self.shared.bybit_archive.corrupt(name, downloads);
    }

    /// Replaces the Bybit archive file named `name` right after its next `HEAD` is answered
    /// (the same rows packed again: other bytes and md5).
    pub fn replace_bybit_file_after_head(&self, name: &str) {
        self.shared.bybit_archive.replace_after_head(name);
    }

    /// Bybit archive ETags of 32 hex digits that are not the files' md5 (`true`), or their md5s.
    pub fn set_bybit_opaque_etags(&self, on: bool) {
        self.shared.bybit_archive.opaque_etags(on);
    }

    /// `http://IP:PORT/usdm`: the USD-M futures REST base (append `/fapi/v1/klines`,
    /// `/futures/data/openInterestHist`, …), Binance's `https://fapi.binance.com`.
    pub fn fapi_url(&self) -> String {
        format!("http://{}/usdm", self.addr)
    }

    /// `http://IP:PORT/coinm`: the COIN-M futures REST base (append `/dapi/v1/…`,
    /// `/futures/data/…`), Binance's `https://dapi.binance.com`.
    pub fn dapi_url(&self) -> String {
        format!("http://{}/coinm", self.addr)
    }

    /// `ws://IP:PORT/usdm`: the USD-M futures WebSocket base (append `/ws/<stream>`, `/ws`,
    /// `/stream?streams=a/b`, or the routed `/public/…` and `/market/…` forms).
    pub fn fws_url(&self) -> String {
        format!("ws://{}/usdm", self.addr)
    }

    /// `ws://IP:PORT/coinm`: the COIN-M futures WebSocket base (like [`fws_url`](Self::fws_url)).
    pub fn dws_url(&self) -> String {
        format!("ws://{}/coinm", self.addr)
    }

    /// `ws://IP:PORT` of the WebSocket streams (the same port as [`base_url`](Self::base_url)):
    /// connect to `{ws_url}/ws/btcusdt@trade`, `{ws_url}/stream?streams=a/b` or `{ws_url}/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Replaces the WebSocket behaviours and faults; open connections follow the new values at
    /// their next tick (durations count from each connection's opening).
    pub fn set_ws_faults(&self, f: WsFaults) {
        self.shared.ws.set_faults(f);
    }

    /// The WebSocket behaviours and faults in force.
    pub fn ws_faults(&self) -> WsFaults {
        self.shared.ws.faults()
    }

    /// Replaces the WebSocket behaviours and faults of the futures markets' connections
    /// (`/usdm/…`, `/coinm/…`); open connections follow at their next tick.
    pub fn set_futures_ws_faults(&self, f: WsFaults) {
        self.shared.fws.set_faults(f);
    }

    /// The futures markets' WebSocket behaviours and faults in force.
    pub fn futures_ws_faults(&self) -> WsFaults {
        self.shared.fws.faults()
    }

    /// Drops every open WebSocket connection of every market abruptly (TCP close without a
    /// close frame); returns how many there were.
    pub fn disconnect_all(&self) -> usize {
        self.shared.broadcast(Control::Disconnect)
    }

    /// Sends a `serverShutdown` event (`{"e":"serverShutdown","E":ms}`; in combined streams
    /// `{"stream":"!serverShutdown","data":{…}}`) to every open WebSocket connection, which
    /// keeps streaming for [`WsFaults::shutdown_grace`] and then gets a close frame (1001).
    /// Every market's connections. Returns how many connections were notified.
    pub fn send_server_shutdown(&self) -> usize {
        self.shared.broadcast(Control::Shutdown)
    }

    /// Makes every open WebSocket connection of every market go silent for good (see
    /// [`WsFaults::stall`]); connections opened later are not affected. Returns how many there
    /// were.
    pub fn stall_all(&self) -> usize {
        self.shared.broadcast(Control::Stall)
    }

    /// Makes every open WebSocket connection of every market deliver what it sends from now on
    /// `lag` late, in order, as over a congested link: events, `serverShutdown` notices and
    /// answers are held for `lag`, and a close frame follows the last of them. Connections opened later are not affected. Returns how many were affected.
    pub fn lag_all(&self, lag: Duration) -> usize {
        self.shared.broadcast(Control::Lag(lag))
    }

    /// Replaces the bulk-archive delays and faults; applies from the next archive request.
    /// Counted faults ([`ArchiveFaults::corrupt`], [`ArchiveFaults::truncate`]) start from
    /// the counts given.
    pub fn set_archive_faults(&self, f: ArchiveFaults) {
        self.shared.archive.set_faults(f);
    }

    /// The bulk-archive delays and faults in force, counted faults with the downloads they
    /// still have to hit.
    pub fn archive_faults(&self) -> ArchiveFaults {
        self.shared.archive.faults()
    }

    /// The temporary directory holding the generated archive zips: `None` before the first
    /// archive file was generated and after the server stopped (the directory is removed then).
    pub fn archive_cache_dir(&self) -> Option<std::path::PathBuf> {
        self.shared.archive.cache_dir()
    }

    /// Replaces the faults. A storm starts counting anew and the "every Nth data request"
    /// counter restarts, so the Nth data request after this call is the first one hit.
    pub fn set_faults(&self, f: Faults) {
        self.shared.set_faults(f);
    }

    /// The aggregate-trade settings currently served (including the missing ids of the current
    /// faults), for computing expected records with [`Data`]'s methods.
    pub fn data(&self) -> Data {
        Data::clone(&self.shared.lock().data)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimStats {
        snapshot(&self.shared)
    }

    /// Stops accepting, closes every connection, waits until the server task has ended and
    /// removes the archive's generated files.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.shared.archive.close();
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.shared.archive.close();
    }
}

fn snapshot(shared: &Shared) -> SimStats {
    let mut stats = {
        let st = shared.lock();
        let mut stats = st.stats.clone();
        for market in SimMarket::ALL {
            let limits = &st.markets[market.index()];
            let mut ms = limits.stats.clone();
            ms.max_window_weight =
                u32::try_from(limits.weight.max_window_weight()).unwrap_or(u32::MAX);
            stats.max_window_weight = stats.max_window_weight.max(ms.max_window_weight);
            stats.per_market.insert(market.name().to_string(), ms);
        }
        stats
    };
    shared.ws.fill_stats(&mut stats);
    shared.fws.fill_stats(&mut stats);
    shared.archive.fill_stats(&mut stats);
    stats.bybit = shared.bybit.stats();
    stats.bybit_archive = shared.bybit_archive.stats();
    stats.okx = shared.okx.stats();
    stats.okx_archive = shared.okx_archive.stats();
    stats.okx_ws = shared.okx_ws.stats();
    stats.bybit_ws = shared.bybit_ws.stats();
    stats.max_requests_at_once = shared.rest_at_once.max();
    stats
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    conns.spawn(async move {
                        let cut = Arc::new(AtomicBool::new(false));
                        let conn = Arc::new(Conn {
                            peer: peer.ip(),
                            pending: Mutex::new(None),
                            okx_pending: Mutex::new(None),
                            cut: cut.clone(),
                        });
                        let svc = {
                            let (shared, conn) = (shared.clone(), conn.clone());
                            service_fn(move |req| handle(shared.clone(), conn.clone(), req))
                        };
                        if let Err(e) = http1::Builder::new()
                            .serve_connection(TokioIo::new(CutStream::new(stream, cut)), svc)
                            .with_upgrades()
                            .await
                        {
                            tracing::debug!(error = %e, "connection ended");
                        }
                        let pending = conn.pending.lock().unwrap_or_else(|e| e.into_inner()).take();
                        if let Some((hub, pending)) = pending {
                            ws::serve(hub, pending).await;
                        }
                        let okx = conn.okx_pending.lock().unwrap_or_else(|e| e.into_inner()).take();
                        if let Some(pending) = okx {
                            crate::okx_ws::serve(pending).await;
                        }
                    });
                }
                Err(e) => {
                    // Typically EMFILE: give connections time to close.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

/// Response headers that depend on the request's outcome.
struct Meta {
    used: u64,
    retry_after: Option<u64>,
}

fn respond(shared: &Shared, status: u16, body: String, meta: &Meta) -> Response<Body> {
    let mut resp = Response::new(Either::Left(Full::new(Bytes::from(body))));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    let used = HeaderValue::from(meta.used);
    h.insert(HeaderName::from_static("x-mbx-used-weight"), used.clone());
    h.insert(shared.window_header.clone(), used);
    if let Some(secs) = meta.retry_after {
        h.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

fn too_many_body(shared: &Shared, market: SimMarket) -> String {
    api::error_body(
        -1003,
        &format!(
            "Too much request weight used; current limit is {} request weight per {} {}. \
             Please use WebSocket Streams for live updates to avoid polling the API.",
            shared.weight_limits[market.index()],
            shared.window.num,
            shared.window.unit
        ),
    )
}

/// The 429 body of a request-count limit (`fundingRate`, `/futures/data/*`).
fn too_many_requests_body(limit: u32, window: Duration) -> String {
    api::error_body(
        -1003,
        &format!(
            "Too many requests; current limit is {limit} requests per {} seconds. \
             Please use WebSocket Streams for live updates to avoid polling the API.",
            window.as_secs_f64()
        ),
    )
}

fn banned_body(until_ms: i64) -> String {
    let mut until = String::new();
    push_i64(&mut until, until_ms);
    api::error_body(
        -1003,
        &format!(
            "Way too much request weight used; IP banned until {until}. \
             Please use WebSocket Streams for live updates to avoid bans."
        ),
    )
}

/// What the locked part of the pipeline decided.
enum Plan {
    Storm(Storm),
    Reject { status: u16, body: String },
    Fail5xx,
    Drop,
    Serve(Arc<Data>),
}

async fn handle(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, DropConnection> {
    let path = req.uri().path();
    if let Some(sim) = path.strip_prefix("/sim/") {
        let sim = sim.to_string();
        return Ok(sim_endpoint(&shared, &sim, req).await);
    }
    if let Some(rest) = path.strip_prefix("/bybit-ws") {
        let rest = rest.to_string();
        return Ok(shared.bybit_ws.upgrade(&mut req, &rest).map(Either::Left));
    }
    let archive_path = [("/bybit-archive/", false), ("/okx-archive/", true)]
        .into_iter()
        .find_map(|(prefix, okx)| Some((path.strip_prefix(prefix)?, okx)));
    if let Some((rest, okx)) = archive_path {
        let data = shared.lock().data.clone();
        let missing_days = shared.archive.faults().missing_days;
        let head = req.method() == hyper::Method::HEAD;
        // Generating a day's file is seconds of CPU: off the runtime, so streams keep flowing.
        let (worker, rest, now) = (shared.clone(), rest.to_string(), shared.clock.now_ms());
        let answer = tokio::task::spawn_blocking(move || {
            if okx {
                worker
                    .okx_archive
                    .handle(&rest, head, &data, now, &missing_days)
            } else {
                worker
                    .bybit_archive
                    .handle(&rest, head, &data, now, &missing_days)
            }
        })
        .await
        .map_err(|_| DropConnection)?;
        let body = if head {
            Bytes::new()
        } else {
            Bytes::from(answer.body.as_ref().clone())
        };
        let mut resp = Response::new(Either::Left(Full::new(body)));
        *resp.status_mut() =
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if let Some(etag) = answer.etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
            resp.headers_mut().insert(hyper::header::ETAG, etag);
        }
        if head && answer.status == 200 {
            resp.headers_mut().insert(
                hyper::header::CONTENT_LENGTH,
                HeaderValue::from(answer.length),
            );
        }
        return Ok(resp);
    }
    if let Some(rest) = path
        .strip_prefix("/okx-ws")
        .filter(|r| r.is_empty() || r.starts_with('/'))
    {
        let rest = rest.to_string();
        let (resp, pending) = crate::okx_ws::upgrade(&shared.okx_ws, &mut req, conn.peer, &rest);
        *conn.okx_pending.lock().unwrap_or_else(|e| e.into_inner()) = pending;
        return Ok(resp.map(Either::Left));
    }
    if let Some(rest) = path.strip_prefix("/okx").filter(|r| r.starts_with('/')) {
        let (data, latency) = {
            let st = shared.lock();
            (st.data.clone(), st.faults.latency)
        };
        let query = Query::parse(req.uri().query());
        let answer = shared.okx.handle(rest, &query, &data, &shared.clock);
        // The faults' latency, after the request was counted: the answer takes that long.
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut resp = Response::new(Either::Left(Full::new(Bytes::from(answer.body))));
        *resp.status_mut() =
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        return Ok(resp);
    }
    if let Some(rest) = path.strip_prefix("/bybit").filter(|r| r.starts_with('/')) {
        let data = shared.lock().data.clone();
        let query = Query::parse(req.uri().query());
        let answer = shared.bybit.handle(rest, &query, &data, &shared.clock);
        let mut resp = Response::new(Either::Left(Full::new(Bytes::from(answer.body))));
        *resp.status_mut() =
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let json = answer.status == 200;
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(if json {
                "application/json; charset=utf-8"
            } else {
                "text/plain"
            }),
        );
        return Ok(resp);
    }
    if path.starts_with("/data/") {
        let data = shared.lock().data.clone();
        let range = req.headers().get(RANGE).and_then(|v| v.to_str().ok());
        return Ok(shared
            .archive
            .serve(
                req.method(),
                path,
                range,
                data,
                shared.clock.now_ms(),
                conn.cut.clone(),
            )
            .await);
    }
    let (market, rest) = SimMarket::split_path(path);
    let ws_endpoint = match market {
        SimMarket::Spot => ws::is_ws_path(path).then_some((ws::Route::All, path)),
        // Binance split USD-M's streams into routed endpoints; COIN-M keeps one endpoint, so
        // a client that routes COIN-M streams finds nothing there (HTTP 404), as on Binance.
        SimMarket::CoinM => ws::futures_route(rest).filter(|(route, _)| *route == ws::Route::All),
        SimMarket::UsdM => ws::futures_route(rest).map(|(route, inner)| match route {
            ws::Route::All => (ws::Route::UsdmLegacy, inner),
            routed => (routed, inner),
        }),
    };
    if let Some((route, inner)) = ws_endpoint {
        let hub = if market.is_futures() {
            shared.fws.clone()
        } else {
            shared.ws.clone()
        };
        let inner = inner.to_string();
        let ep = ws::Endpoint {
            market,
            route,
            path: &inner,
        };
        let (resp, pending) = ws::upgrade(&hub, &mut req, conn.peer, ep);
        if let Some(pending) = pending {
            *conn.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some((hub, pending));
        }
        return Ok(resp.map(Either::Left));
    }
    // Until this request's answer is handed over (its body is in memory).
    let _under = shared.rest_at_once.enter();
    let ep = Endpoint::of(market, rest);
    let query = Query::parse(req.uri().query());
    let api_key = req
        .headers()
        .get("x-mbx-apikey")
        .is_some_and(|v| !v.is_empty());
    let weight = ep.weight_in(market, &query);
    let count_limit = ep.count_limit();
    let now = shared.clock.now_ms();
    let mi = market.index();

    let (plan, used, retry_after, latency) = {
        let mut guard = shared.lock();
        let st = &mut *guard;
        st.stats.requests += 1;
        st.markets[mi].stats.requests += 1;
        // Known endpoints are counted under their full path, prefix included.
        let key = if ep == Endpoint::NotFound {
            "other"
        } else {
            path
        };
        match st.stats.per_endpoint.get_mut(key) {
            Some(n) => *n += 1,
            None => {
                st.stats.per_endpoint.insert(key.to_string(), 1);
            }
        }
        let latency = st.faults.latency;
        if st.storm_left > 0 {
            st.storm_left -= 1;
            let storm = st.faults.storm.clone().unwrap_or(Storm {
                status: 429,
                count: 0,
                retry_after_secs: 1,
                code: None,
            });
            match storm.status {
                418 => {
                    st.stats.responses_418 += 1;
                    st.markets[mi].stats.responses_418 += 1;
                }
                429 => {
                    st.stats.responses_429 += 1;
                    st.markets[mi].stats.responses_429 += 1;
                }
                500.. => st.stats.responses_5xx += 1,
                _ => {}
            }
            let used = st.markets[mi].weight.used(now);
            let retry = matches!(storm.status, 429 | 418).then_some(storm.retry_after_secs);
            (Plan::Storm(storm), used, retry, latency)
        } else {
            let limits = &mut st.markets[mi];
            // Count-limited endpoints weigh nothing: only a ban stops them before their own
            // limit does.
            let checked = match count_limit {
                Some(_) => match limits.weight.banned(now) {
                    Some(verdict) => crate::limiter::Checked {
                        verdict,
                        used: limits.weight.used(now),
                        charged: 0,
                    },
                    None => crate::limiter::Checked {
                        verdict: Verdict::Accept,
                        used: limits.weight.used(now),
                        charged: 0,
                    },
                },
                None => limits.weight.check(now, weight),
            };
            st.stats.weight_total += u64::from(checked.charged);
            limits.stats.weight_total += u64::from(checked.charged);
            let counted = match (checked.verdict, count_limit) {
                (Verdict::Accept, Some(CountLimit::FundingRate)) => limits
                    .funding
                    .check(now)
                    .map_err(|retry| (retry, shared.funding_limit)),
                (Verdict::Accept, Some(CountLimit::FuturesData)) => limits
                    .futures_data
                    .check(now)
                    .map_err(|retry| (retry, shared.futures_data_limit)),
                _ => Ok(()),
            };
            match checked.verdict {
                _ if counted.is_err() => {
                    let (retry_after_secs, (limit, window)) = counted.err().unwrap_or_default();
                    st.stats.responses_429 += 1;
                    st.stats.budget_violations += 1;
                    limits.stats.responses_429 += 1;
                    limits.stats.budget_violations += 1;
                    let body = too_many_requests_body(limit, window);
                    let plan = Plan::Reject { status: 429, body };
                    (plan, checked.used, Some(retry_after_secs), latency)
                }
                Verdict::TooMany { retry_after_secs } => {
                    st.stats.responses_429 += 1;
                    st.stats.budget_violations += 1;
                    limits.stats.responses_429 += 1;
                    limits.stats.budget_violations += 1;
                    let body = too_many_body(&shared, market);
                    let plan = Plan::Reject { status: 429, body };
                    (plan, checked.used, Some(retry_after_secs), latency)
                }
                Verdict::Banned {
                    until_ms,
                    retry_after_secs,
                } => {
                    st.stats.responses_418 += 1;
                    st.stats.budget_violations += 1;
                    limits.stats.responses_418 += 1;
                    limits.stats.budget_violations += 1;
                    let plan = Plan::Reject {
                        status: 418,
                        body: banned_body(until_ms),
                    };
                    (plan, checked.used, Some(retry_after_secs), latency)
                }
                Verdict::Accept => {
                    let mut plan = Plan::Serve(st.data.clone());
                    if ep.is_data() {
                        st.data_requests += 1;
                        let n = st.data_requests;
                        let every = |e: u32| e > 0 && n % u64::from(e) == 0;
                        if every(st.faults.error_5xx_every) {
                            st.stats.responses_5xx += 1;
                            plan = Plan::Fail5xx;
                        } else if every(st.faults.drop_every) {
                            st.stats.dropped += 1;
                            plan = Plan::Drop;
                        }
                    }
                    (plan, checked.used, None, latency)
                }
            }
        }
    };

    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let meta = Meta { used, retry_after };
    let (status, body) = match plan {
        Plan::Drop => return Err(DropConnection),
        Plan::Storm(storm) => {
            let body = match storm.status {
                418 => {
                    let until =
                        now.saturating_add((storm.retry_after_secs as i64).saturating_mul(1000));
                    banned_body(until)
                }
                429 => too_many_body(&shared, market),
                other => api::storm_body(other, storm.code),
            };
            (storm.status, body)
        }
        Plan::Reject { status, body } => (status, body),
        Plan::Fail5xx => (
            503,
            api::error_body(
                -1001,
                "Internal error; unable to process your request. Please try your request again.",
            ),
        ),
        Plan::Serve(data) => {
            let ctx = Ctx {
                market,
                data: &data,
                now,
                weight_limit: shared.weight_limits[mi],
                window: &shared.window,
                agg_horizon_ms: shared
                    .futures_agg_horizon_ms
                    .filter(|_| market.is_futures()),
                api_key,
            };
            match api::respond(ep, &query, &ctx) {
                Ok(body) => (200, body),
                Err(ApiError { status, code, msg }) => (status, api::error_body(code, &msg)),
            }
        }
    };
    Ok(respond(&shared, status, body, &meta))
}

fn clock_json(clock: &SimClock) -> String {
    format!(
        "{{\"now_ms\":{},\"ahead_ms\":{}}}",
        clock.now_ms(),
        clock.ahead_ms()
    )
}

/// `/sim/stats`, `/sim/faults`, `/sim/ws…`, `/sim/archive` and `/sim/clock`: no weight, no
/// faults, no statistics.
async fn sim_endpoint(shared: &Shared, name: &str, req: Request<Incoming>) -> Response<Body> {
    let meta = Meta {
        used: shared.lock().markets[0].weight.used(shared.clock.now_ms()),
        retry_after: None,
    };
    let (status, body) = match (name, req.method()) {
        ("stats", _) => {
            let stats = snapshot(shared);
            (
                200,
                serde_json::to_string(&stats).unwrap_or_else(|_| "{}".into()),
            )
        }
        ("faults", &Method::GET) => {
            let faults = FaultsJson::from(&shared.lock().faults);
            (
                200,
                serde_json::to_string(&faults).unwrap_or_else(|_| "{}".into()),
            )
        }
        ("faults", &Method::POST) | ("faults", &Method::PUT) => match read_faults(req).await {
            Ok(f) => {
                let echo = FaultsJson::from(&f);
                shared.set_faults(f);
                (
                    200,
                    serde_json::to_string(&echo).unwrap_or_else(|_| "{}".into()),
                )
            }
            Err(msg) => (400, api::error_body(-1102, &msg)),
        },
        ("ws", &Method::GET) => (200, ws_faults_json(&shared.ws.faults())),
        ("ws", &Method::POST) | ("ws", &Method::PUT) => {
            match read_json::<WsFaultsJson>(req).await {
                Ok(j) => {
                    let f = j.apply(shared.ws.faults());
                    shared.ws.set_faults(f.clone());
                    (200, ws_faults_json(&f))
                }
                Err(msg) => (400, api::error_body(-1102, &msg)),
            }
        }
        ("archive", &Method::GET) => (200, archive::faults_json(&shared.archive.faults())),
        ("archive", &Method::POST) | ("archive", &Method::PUT) => {
            match read_json::<archive::ArchiveFaultsJson>(req).await {
                Ok(j) => match shared.archive.update_faults(j) {
                    Ok(f) => (200, archive::faults_json(&f)),
                    Err(msg) => (400, api::error_body(-1102, &msg)),
                },
                Err(msg) => (400, api::error_body(-1102, &msg)),
            }
        }
        (n, _) if n == "bybit_ws" || n.starts_with("bybit_ws/") => {
            let n = n.to_string();
            shared.bybit_ws.sim(&n, req).await
        }
        (n, _) if n == "okx_ws" || n.starts_with("okx_ws/") => {
            let n = n.to_string();
            crate::okx_ws::sim_request(&shared.okx_ws, &n, req).await
        }
        ("futures_ws", &Method::GET) => (200, ws_faults_json(&shared.fws.faults())),
        ("futures_ws", &Method::POST) | ("futures_ws", &Method::PUT) => {
            match read_json::<WsFaultsJson>(req).await {
                Ok(j) => {
                    let f = j.apply(shared.fws.faults());
                    shared.fws.set_faults(f.clone());
                    (200, ws_faults_json(&f))
                }
                Err(msg) => (400, api::error_body(-1102, &msg)),
            }
        }
        ("clock", &Method::GET) => (200, clock_json(&shared.clock)),
        // `?advance_ms=N` jumps forward; `?now_ms=T` puts "now" at T.
        ("clock", &Method::POST) => {
            let q = crate::query::Query::parse(req.uri().query());
            let ms = |k: &str| q.get(k).map(str::parse::<i64>);
            match (ms("advance_ms"), ms("now_ms")) {
                (Some(Ok(d)), None) if d >= 0 => {
                    shared.clock.advance(Duration::from_millis(d as u64));
                    (200, clock_json(&shared.clock))
                }
                (None, Some(Ok(t))) if t >= 0 => {
                    shared.clock.set_now_ms(t);
                    (200, clock_json(&shared.clock))
                }
                _ => (
                    400,
                    api::error_body(
                        -1102,
                        "give one of advance_ms (ms to jump forward, >= 0) or now_ms (epoch ms)",
                    ),
                ),
            }
        }
        ("ws/disconnect", &Method::POST) => ws_count(shared.broadcast(Control::Disconnect)),
        ("ws/shutdown", &Method::POST) => ws_count(shared.broadcast(Control::Shutdown)),
        ("ws/stall", &Method::POST) => ws_count(shared.broadcast(Control::Stall)),
        ("ws/lag", &Method::POST) => {
            let q = crate::query::Query::parse(req.uri().query());
            match q.get("ms").map(str::parse::<u64>) {
                Some(Ok(ms)) if ms <= 600_000 => {
                    ws_count(shared.broadcast(Control::Lag(Duration::from_millis(ms))))
                }
                _ => (
                    400,
                    api::error_body(-1102, "ms must be a number of milliseconds, at most 600000"),
                ),
            }
        }
        _ => (404, ApiError::not_found().body()),
    };
    respond(shared, status, body, &meta)
}

async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, String> {
    let body = Limited::new(req.into_body(), 1 << 20)
        .collect()
        .await
        .map_err(|e| format!("could not read body: {e}"))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("invalid faults JSON: {e}"))
}

async fn read_faults(req: Request<Incoming>) -> Result<Faults, String> {
    read_json::<FaultsJson>(req).await?.try_into()
}

fn ws_count(n: usize) -> (u16, String) {
    (200, format!("{{\"connections\":{n}}}"))
}

/// The JSON form of [`WsFaults`] used by `/sim/ws`: durations in ms, `0` = never for the
/// optional ones; fields left out of a POST keep their current value.
#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WsFaultsJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    ping_interval_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pong_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_lifetime_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shutdown_grace_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    drop_every_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stall: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stall_after_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    depth_gap_every: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_incoming_per_sec: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_streams: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections_per_window: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_window_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kline_update_ms: Option<u64>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn ws_faults_json(f: &WsFaults) -> String {
    let j = WsFaultsJson {
        ping_interval_ms: Some(ms(f.ping_interval)),
        pong_timeout_ms: Some(ms(f.pong_timeout)),
        max_lifetime_ms: Some(ms(f.max_lifetime)),
        shutdown_grace_ms: Some(ms(f.shutdown_grace)),
        drop_every_ms: Some(f.drop_every.map_or(0, ms)),
        stall: Some(f.stall),
        stall_after_ms: Some(f.stall_after.map_or(0, ms)),
        depth_gap_every: Some(f.depth_gap_every),
        max_incoming_per_sec: Some(f.max_incoming_per_sec),
        max_streams: Some(f.max_streams),
        max_connections_per_window: Some(f.max_connections_per_window),
        connection_window_ms: Some(ms(f.connection_window)),
        kline_update_ms: Some(ms(f.kline_update)),
    };
    serde_json::to_string(&j).unwrap_or_else(|_| "{}".into())
}

impl WsFaultsJson {
    fn apply(self, mut f: WsFaults) -> WsFaults {
        let d = Duration::from_millis;
        let opt = |v: u64| (v > 0).then(|| Duration::from_millis(v));
        if let Some(v) = self.ping_interval_ms {
            f.ping_interval = d(v);
        }
        if let Some(v) = self.pong_timeout_ms {
            f.pong_timeout = d(v);
        }
        if let Some(v) = self.max_lifetime_ms {
            f.max_lifetime = d(v);
        }
        if let Some(v) = self.shutdown_grace_ms {
            f.shutdown_grace = d(v);
        }
        if let Some(v) = self.drop_every_ms {
            f.drop_every = opt(v);
        }
        if let Some(v) = self.stall {
            f.stall = v;
        }
        if let Some(v) = self.stall_after_ms {
            f.stall_after = opt(v);
        }
        if let Some(v) = self.depth_gap_every {
            f.depth_gap_every = v;
        }
        if let Some(v) = self.max_incoming_per_sec {
            f.max_incoming_per_sec = v;
        }
        if let Some(v) = self.max_streams {
            f.max_streams = v;
        }
        if let Some(v) = self.max_connections_per_window {
            f.max_connections_per_window = v;
        }
        if let Some(v) = self.connection_window_ms {
            f.connection_window = d(v);
        }
        if let Some(v) = self.kline_update_ms {
            f.kline_update = d(v);
        }
        f
    }
}

/// The JSON form of [`Faults`] used by `/sim/faults`.
#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct FaultsJson {
    latency_ms: u64,
    error_5xx_every: u32,
    drop_every: u32,
    storm: Option<StormJson>,
    missing_agg_ids: Vec<(u64, u64)>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StormJson {
    status: u16,
    count: u32,
    #[serde(default)]
    retry_after_secs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<i32>,
}

impl From<&Faults> for FaultsJson {
    fn from(f: &Faults) -> Self {
        FaultsJson {
            latency_ms: f.latency.as_millis() as u64,
            error_5xx_every: f.error_5xx_every,
            drop_every: f.drop_every,
            storm: f.storm.as_ref().map(|s| StormJson {
                status: s.status,
                count: s.count,
                retry_after_secs: s.retry_after_secs,
                code: s.code,
            }),
            missing_agg_ids: f.missing_agg_ids.clone(),
        }
    }
}

impl TryFrom<FaultsJson> for Faults {
    type Error = String;

    fn try_from(j: FaultsJson) -> Result<Faults, String> {
        if let Some(s) = &j.storm {
            if !matches!(s.status, 400 | 408 | 418 | 429 | 451 | 500..=504) {
                return Err(format!(
                    "storm status must be 429, 418, 408, 451, 400 or 500-504, not {}",
                    s.status
                ));
            }
            if let Some(code) = s.code {
                if api::retry_message(code).is_none() {
                    return Err(format!(
                        "storm code must be one of Binance's try-again codes (-1000, -1001, -1006, -1007, -1008), not {code}"
                    ));
                }
            }
        }
        Ok(Faults {
            latency: Duration::from_millis(j.latency_ms),
            error_5xx_every: j.error_5xx_every,
            drop_every: j.drop_every,
            storm: j.storm.map(|s| Storm {
                status: s.status,
                count: s.count,
                retry_after_secs: s.retry_after_secs,
                code: s.code,
            }),
            missing_agg_ids: j.missing_agg_ids,
        })
    }
}
