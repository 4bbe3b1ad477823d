//! `RestClient`: every REST call to Binance goes through here, so that each one is weighed by the
//! limiter, retried when retrying is safe (5xx, timeouts, dropped connections: market data is
//! read-only), paused on 429/418 for the server's `Retry-After`, and turned into a clear error
//! when Binance says the request itself is wrong.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::HeaderMap;
use serde::Deserialize;

use tokio_util::sync::CancellationToken;

use super::endpoint::{self, Answer, Cost, Endpoint, RequestLimit, REQUEST_COUNTED_WEIGHT};
use super::limiter::WeightLimiter;
use super::VenueSettings;
use crate::bounds::{self, BodyError};
use crate::market::Market;
pub use crate::venue::requests::RestStats;

/// Why a REST call failed for good.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("Binance rejected {path}: {msg} (code {code}, HTTP {status})")]
    Binance {
        path: String,
        status: u16,
        code: i64,
        msg: String,
    },
    #[error("Binance answered HTTP {status} to {path} and asks to wait {retry_after:?}, longer than MAX_RETRY_AFTER ({max:?}){ban}")]
    RetryAfterTooLong {
        path: String,
        status: u16,
        retry_after: Duration,
        max: Duration,
        ban: &'static str,
    },
    #[error("{path} failed {attempts} times (MAX_RETRIES={max_retries}); last error: {last}")]
    RetriesExhausted {
        path: String,
        attempts: u32,
        max_retries: u32,
        last: String,
    },
    #[error("Binance refused {path} with HTTP 403 (web application firewall): the request pattern or IP is blocked")]
    Forbidden { path: String },
    #[error("Binance refused {path} with HTTP 451: it does not serve requests from this location (restricted under its terms, 'b. Eligibility'); retrying from here will not help: run the job where Binance serves")]
    RestrictedLocation { path: String },
    #[error("unexpected answer from {path}: {detail}")]
    Protocol { path: String, detail: String },
    /// The job is stopping: the request was abandoned (before it was sent or while waiting).
    #[error("{path} was abandoned: the job is stopping")]
    Cancelled { path: String },
}

#[derive(Deserialize)]
struct BinanceErrorBody {
    code: i64,
    msg: String,
}

/// The exchange's request-weight rule, from `exchangeInfo.rateLimits`.
#[derive(Debug, Clone, Copy)]
pub struct WeightRule {
    pub limit: u32,
    pub window: Duration,
}

impl WeightRule {
    /// Binance's documented budget of `market`, until its `exchangeInfo` says otherwise: spot
    /// 6,000 a minute, each futures market 2,400.
    pub fn documented(market: Market) -> Self {
        WeightRule {
            limit: if market.is_futures() { 2400 } else { 6000 },
            window: Duration::from_secs(60),
        }
    }
}

pub struct RestClient {
    http: reqwest::Client,
    base: String,
    market: Market,
    limiter: Arc<WeightLimiter>,
    /// Limits counted in requests (futures `fundingRate`, `/futures/data/`), made on first use
    /// with the same share of the budget as the weight limiter.
    request_limiters: std::sync::Mutex<Vec<(RequestLimit, Arc<WeightLimiter>)>>,
    share: f64,
    max_retries: u32,
    max_retry_after: Duration,
    pub stats: Arc<RestStats>,
    /// Fires when the job stops: every wait (weight budget, Retry-After, backoff, the request
    /// itself) ends at once.
    cancel: CancellationToken,
}

impl RestClient {
    pub fn new(
        cfg: &VenueSettings,
        limiter: Arc<WeightLimiter>,
        stats: Arc<RestStats>,
        cancel: CancellationToken,
    ) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        if let Some(key) = &cfg.api_key {
            let mut v = reqwest::header::HeaderValue::from_str(key.expose()).map_err(|_| {
                "BINANCE_API_KEY contains characters that cannot be sent in an HTTP header"
                    .to_string()
            })?;
            v.set_sensitive(true);
            headers.insert("X-MBX-APIKEY", v);
        }
        let http = cfg
            .http_client()?
            .default_headers(headers)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(RestClient {
            http,
            base: cfg.api_url.clone(),
            market: cfg.market,
            limiter,
            request_limiters: Default::default(),
            share: cfg.rate_limit_share,
            max_retries: cfg.max_retries,
            max_retry_after: cfg.max_retry_after,
            stats,
            cancel,
        })
    }

    pub fn limiter(&self) -> &Arc<WeightLimiter> {
        &self.limiter
    }

    pub fn market(&self) -> Market {
        self.market
    }

    /// The limiter that `endpoint`'s requests wait on, and the weight each costs there.
    fn limiter_for(&self, endpoint: Endpoint) -> (Arc<WeightLimiter>, u32) {
        match endpoint.cost(self.market) {
            Cost::Weight(w) => (self.limiter.clone(), w),
            Cost::Request(limit) => {
                let mut all = self.request_limiters.lock().unwrap();
                if let Some((_, l)) = all.iter().find(|(l, _)| *l == limit) {
                    return (l.clone(), 1);
                }
                let l = Arc::new(WeightLimiter::new(
                    limit.requests,
                    limit.window,
                    self.share,
                    self.limiter.clock_offset_ms(),
                    Duration::ZERO,
                ));
                all.push((limit, l.clone()));
                (l, 1)
            }
        }
    }

    /// GETs `endpoint` with `query`, reserving its weight first; retries what is safe to
    /// retry. Returns [`RestError::Cancelled`] as soon as the job stops.
    pub async fn get(
        &self,
        endpoint: Endpoint,
        query: &[(&str, String)],
    ) -> Result<Bytes, RestError> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(RestError::Cancelled { path: endpoint.path(self.market) }),
            r = self.get_uncancelled(endpoint, query) => r,
        }
    }

    async fn get_uncancelled(
        &self,
        endpoint: Endpoint,
        query: &[(&str, String)],
    ) -> Result<Bytes, RestError> {
        let path = endpoint.path(self.market);
        let path = path.as_str();
        let (limiter, weight) = self.limiter_for(endpoint);
        let url = format!("{}{}", self.base, path);
        let mut failures = 0u32;
        let mut rate_limited = 0u32;
        loop {
            let grant = limiter.acquire(weight).await;
            // A request-counted endpoint is charged a unit of weight too.
            let weight_grant = match Arc::ptr_eq(&limiter, &self.limiter) {
                true => None,
                false => Some(self.limiter.acquire(REQUEST_COUNTED_WEIGHT).await),
            };
            RestStats::bump(&self.stats.requests);
            self.stats
                .weight
                .fetch_add(endpoint.weight(self.market) as u64, Ordering::Relaxed);
            let outcome = self.http.get(&url).query(query).send().await;
            let last_error = match outcome {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    // Only the weight budget has a server count in the headers.
                    match weight_grant {
                        None => limiter.complete(grant, used_weight(resp.headers())),
                        Some(w) => {
                            limiter.complete(grant, None);
                            self.limiter.complete(w, used_weight(resp.headers()));
                        }
                    }
                    match status {
                        200..=299 => match bounds::read_capped(resp, bounds::MAX_REST_BODY).await {
                            Ok(body) => return Ok(body),
                            Err(e @ BodyError::TooLarge { .. }) => {
                                return Err(RestError::Protocol {
                                    path: path.to_string(),
                                    detail: e.to_string(),
                                })
                            }
                            Err(e) => {
                                RestStats::bump(&self.stats.transport_errors);
                                e.to_string()
                            }
                        },
                        429 | 418 => {
                            rate_limited += 1;
                            let retry_after =
                                retry_after(resp.headers()).unwrap_or(if status == 418 {
                                    Duration::from_secs(120)
                                } else {
                                    Duration::from_secs(1)
                                });
                            if status == 418 {
                                RestStats::bump(&self.stats.responses_418);
                                tracing::error!(
                                    path,
                                    retry_after_s = retry_after.as_secs(),
                                    "Binance banned this IP (HTTP 418); waiting out the ban"
                                );
                            } else {
                                RestStats::bump(&self.stats.responses_429);
                                tracing::warn!(
                                    path,
                                    retry_after_s = retry_after.as_secs(),
                                    "Binance rate limit hit (HTTP 429); pausing all requests"
                                );
                            }
                            if retry_after > self.max_retry_after || rate_limited > 100 {
                                return Err(RestError::RetryAfterTooLong {
                                    path: path.to_string(),
                                    status,
                                    retry_after,
                                    max: self.max_retry_after,
                                    ban: if status == 418 {
                                        " (the IP is banned)"
                                    } else {
                                        ""
                                    },
                                });
                            }
                            limiter.pause(retry_after);
                            RestStats::bump(&self.stats.retries);
                            continue;
                        }
                        403 => {
                            return Err(RestError::Forbidden {
                                path: path.to_string(),
                            })
                        }
                        _ => {
                            // An error body is a line of JSON; a larger one is not Binance's.
                            let body = bounds::read_capped(resp, bounds::MAX_ERROR_BODY)
                                .await
                                .unwrap_or_default();
                            let parsed = serde_json::from_slice::<BinanceErrorBody>(&body).ok();
                            match endpoint::answer(status, parsed.as_ref().map(|b| b.code)) {
                                Answer::TryAgain => {
                                    if status >= 500 {
                                        RestStats::bump(&self.stats.responses_5xx);
                                    }
                                    match parsed {
                                        Some(b) => {
                                            format!("HTTP {status}: {} (code {})", b.msg, b.code)
                                        }
                                        None => format!("HTTP {status}"),
                                    }
                                }
                                Answer::RestrictedLocation => {
                                    return Err(RestError::RestrictedLocation {
                                        path: path.to_string(),
                                    })
                                }
                                Answer::Final => {
                                    return Err(match parsed {
                                        Some(b) => RestError::Binance {
                                            path: path.to_string(),
                                            status,
                                            code: b.code,
                                            msg: b.msg,
                                        },
                                        None => RestError::Protocol {
                                            path: path.to_string(),
                                            detail: format!(
                                                "HTTP {status}: {}",
                                                String::from_utf8_lossy(
                                                    &body[..body.len().min(200)]
                                                )
                                            ),
                                        },
                                    })
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    limiter.complete(grant, None);
                    if let Some(w) = weight_grant {
                        self.limiter.complete(w, None);
                    }
                    if e.is_redirect() {
                        // Where the server sends us is not going to change on a retry.
                        return Err(RestError::Protocol {
                            path: path.to_string(),
                            detail: std::error::Error::source(&e)
                                .map_or_else(|| e.to_string(), |s| s.to_string()),
                        });
                    }
                    self.stats.transport_failure(&e)
                }
            };
            failures += 1;
            if failures > self.max_retries {
                return Err(RestError::RetriesExhausted {
                    path: path.to_string(),
                    attempts: failures,
                    max_retries: self.max_retries,
                    last: last_error,
                });
            }
            self.stats.back_off(path, failures, &last_error).await;
        }
    }
}

impl RestError {
    /// Whether Binance refuses this IP for longer than the job waits: a retry now would only
    /// call during the ban (see [`LoaderError::Banned`](crate::error::LoaderError::Banned)).
    pub fn ban(&self) -> Option<String> {
        match self {
            RestError::RetryAfterTooLong { retry_after, .. } => {
                let until = chrono::Utc::now()
                    + chrono::Duration::from_std(*retry_after).unwrap_or(chrono::Duration::MAX);
                Some(format!(
                    "{self}. Binance refuses this IP until about {}: the Job is not retried (exit 4); start it \
                     again after that, or raise MAX_RETRY_AFTER to wait it out",
                    until.format("%Y-%m-%dT%H:%M:%SZ")
                ))
            }
            RestError::Forbidden { .. } => Some(format!(
                "{self}. Binance does not say for how long: the Job is not retried (exit 4); start it again later"
            )),
            _ => None,
        }
    }
}

/// The server's weight count for the current window, from `X-MBX-USED-WEIGHT-<n><unit>`.
fn used_weight(headers: &HeaderMap) -> Option<u32> {
    headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-mbx-used-weight-"))
        .filter_map(|(_, v)| v.to_str().ok()?.trim().parse::<u32>().ok())
        .max()
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(Duration::from_secs(v))
}

/// Server clock offset (server − local, ms) and round-trip time, from `/api/v3/time`.
pub async fn clock_offset(client: &RestClient) -> Result<(i64, Duration), RestError> {
    #[derive(Deserialize)]
    struct ServerTime {
        #[serde(rename = "serverTime")]
        server_time: i64,
    }
    let t0 = chrono::Utc::now().timestamp_millis();
    let started = Instant::now();
    let body = client.get(Endpoint::Time, &[]).await?;
    let rtt = started.elapsed();
    let t1 = chrono::Utc::now().timestamp_millis();
    let st: ServerTime = serde_json::from_slice(&body).map_err(|e| RestError::Protocol {
        path: Endpoint::Time.path(client.market()),
        detail: e.to_string(),
    })?;
    Ok((st.server_time - (t0 + t1) / 2, rtt))
}

/// The REQUEST_WEIGHT rule from an `exchangeInfo` body, if it has one.
pub fn weight_rule(exchange_info: &[u8]) -> Option<WeightRule> {
    #[derive(Deserialize)]
    struct Info {
        #[serde(rename = "rateLimits", default)]
        rate_limits: Vec<Limit>,
    }
    #[derive(Deserialize)]
    struct Limit {
        #[serde(rename = "rateLimitType")]
        kind: String,
        interval: String,
        #[serde(rename = "intervalNum")]
        num: u64,
        limit: u32,
    }
    let info: Info = serde_json::from_slice(exchange_info).ok()?;
    let l = info
        .rate_limits
        .into_iter()
        .find(|l| l.kind == "REQUEST_WEIGHT")?;
    let unit = match l.interval.as_str() {
        "SECOND" => 1,
        "MINUTE" => 60,
        "HOUR" => 3600,
        "DAY" => 86_400,
        _ => return None,
    };
    Some(WeightRule {
        limit: l.limit,
        window: Duration::from_secs(unit * l.num.max(1)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counted_endpoints_wait_on_their_own_limits() {
        let cfg = VenueSettings {
            market: Market::UsdM,
            api_url: "http://127.0.0.1:1".into(),
            ws_url: String::new(),
            api_key: None,
            rate_limit_share: 0.5,
            concurrency: 4,
            page_limit: 1000,
            kline_page_limit: 499,
            max_retries: 0,
            max_retry_after: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
        };
        let weight = Arc::new(WeightLimiter::new(
            2400,
            Duration::from_secs(60),
            0.5,
            0,
            Duration::ZERO,
        ));
        let client = RestClient::new(
            &cfg,
            weight.clone(),
            Arc::default(),
            CancellationToken::new(),
        )
        .unwrap();
        let (l, w) = client.limiter_for(Endpoint::Klines { limit: 499 });
        assert!(Arc::ptr_eq(&l, &weight) && w == 2);
        let (funding, w) = client.limiter_for(Endpoint::FundingRate);
        assert!(!Arc::ptr_eq(&funding, &weight) && w == 1);
        // 500 requests per 5 minutes at the job's share of the IP.
        assert_eq!(
            (funding.budget(), funding.window()),
            (250, Duration::from_secs(300))
        );
        let (again, _) = client.limiter_for(Endpoint::FundingRate);
        assert!(Arc::ptr_eq(&funding, &again), "one limiter per limit");
        let (stats, _) = client.limiter_for(Endpoint::FuturesData(
            crate::registry::FuturesSeries::OpenInterest,
        ));
        assert_eq!(stats.budget(), 500);
        assert!(!Arc::ptr_eq(&stats, &funding));
    }

    /// A server that answers each request on its own connection with `answer(path, head)`.
    async fn http_server(
        answer: impl Fn(&str, &str) -> String + Send + Sync + 'static,
    ) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    let _ = conn.write_all(answer(&path, &head).as_bytes()).await;
                });
            }
        });
        addr
    }

    fn redirect(to: &str) -> String {
        format!("HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
    }

    #[tokio::test]
    async fn redirects_stay_on_the_configured_host_so_the_api_key_does_too() {
        let elsewhere_saw = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = elsewhere_saw.clone();
        let elsewhere = http_server(move |_, head| {
            seen.lock().unwrap().push(head.to_string());
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}".into()
        })
        .await;
        let home = http_server(move |path, head| {
            if !head.contains("x-mbx-apikey: the-key") {
                "HTTP/1.1 400 Bad Request\r\ncontent-length: 10\r\nconnection: close\r\n\r\nno api key".into()
            } else if path.starts_with("/api/v3/time") {
                // localhost is another host than 127.0.0.1 as far as origins go.
                redirect(&format!("http://localhost:{}/api/v3/time", elsewhere.port()))
            } else if path.starts_with("/api/v3/exchangeInfo") {
                redirect("/api/v3/moved")
            } else {
                "HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\n{\"a\":1}".into()
            }
        })
        .await;
        let cfg = VenueSettings {
            market: Market::Spot,
            api_url: format!("http://{home}"),
            ws_url: String::new(),
            api_key: Some(crate::secret::Secret::new("the-key")),
            rate_limit_share: 0.5,
            concurrency: 1,
            page_limit: 1000,
            kline_page_limit: 1000,
            max_retries: 3,
            max_retry_after: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
        };
        let limiter = Arc::new(WeightLimiter::new(
            6000,
            Duration::from_secs(60),
            0.5,
            0,
            Duration::ZERO,
        ));
        let client =
            RestClient::new(&cfg, limiter, Arc::default(), CancellationToken::new()).unwrap();
        // The same host: followed, key and all.
        let body = client.get(Endpoint::ExchangeInfo, &[]).await.unwrap();
        assert_eq!(&body[..], b"{\"a\":1}");
        // Another host: refused at once, not retried, and nothing reaches it.
        match client.get(Endpoint::Time, &[]).await {
            Err(RestError::Protocol { detail, .. }) => {
                assert!(detail.contains("another host"), "{detail}")
            }
            other => panic!("expected a refused redirect, got {other:?}"),
        }
        assert_eq!(client.stats.retries.load(Ordering::Relaxed), 0);
        assert!(
            elsewhere_saw.lock().unwrap().is_empty(),
            "the other host was asked"
        );
    }

    #[test]
    fn reads_the_weight_rule() {
        let body = br#"{"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":6000},{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":100}]}"#;
        let r = weight_rule(body).unwrap();
        assert_eq!((r.limit, r.window), (6000, Duration::from_secs(60)));
        assert!(weight_rule(b"{}").is_none());
    }
}
