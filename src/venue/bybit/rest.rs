//! `BybitClient`: every REST call to Bybit goes through here, paced by its IP limit (at most a
//! share of 600 requests in any 5 seconds), retried when retrying is safe (HTTP 5xx, a
//! server-error `retCode`, timeouts, dropped connections: market data is read-only), paused on
//! `retCode` 10006, and turned into a clear error when Bybit says the request is wrong or
//! that the IP is banned (HTTP 403).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::rules;
use crate::bounds::{self, BodyError};
use crate::venue::requests::{RequestWindow, RestStats};
use crate::venue::VenueSettings;

/// Why a request to Bybit failed for good.
#[derive(Debug, thiserror::Error)]
pub enum BybitError {
    #[error("Bybit rejected {path}: {msg} (retCode {code})")]
    Rejected {
        path: String,
        code: i64,
        msg: String,
    },
    #[error(
        "Bybit refused {path} with HTTP 403: its IP limit was exceeded from this address (600 requests \
         in 5 s, shared by everything on it) or Bybit does not serve this location; Bybit lifts such a ban \
         after at least 10 minutes"
    )]
    Forbidden { path: String },
    #[error("{path} failed {attempts} times (MAX_RETRIES={max_retries}); last error: {last}")]
    RetriesExhausted {
        path: String,
        attempts: u32,
        max_retries: u32,
        last: String,
    },
    #[error("unexpected answer from {path}: {detail}")]
    Protocol { path: String, detail: String },
    #[error("{path} was abandoned: the job is stopping")]
    Cancelled { path: String },
}

/// Bybit's envelope: `retCode` 0 and the data in `result`, or an error code and message.
#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(rename = "retCode")]
    ret_code: i64,
    #[serde(rename = "retMsg", default)]
    ret_msg: String,
    result: Option<T>,
    /// The server's time in ms.
    time: Option<i64>,
}

pub struct BybitClient {
    http: reqwest::Client,
    base: String,
    pub window: Arc<RequestWindow>,
    pub stats: Arc<RestStats>,
    max_retries: u32,
    cancel: CancellationToken,
}

impl BybitClient {
    pub fn new(cfg: &VenueSettings, cancel: CancellationToken) -> Result<Self, String> {
        let http = cfg
            .http_client()?
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(BybitClient {
            http,
            base: cfg.api_url.clone(),
            window: Arc::new(RequestWindow::new(
                rules::IP_REQUESTS,
                rules::IP_WINDOW,
                cfg.rate_limit_share,
            )),
            stats: Arc::new(RestStats::default()),
            max_retries: cfg.max_retries,
            cancel,
        })
    }

    /// GETs `path` with `query` and returns its `result` and the server's time; retries what
    /// is safe to retry. Ends with [`BybitError::Cancelled`] as soon as the job stops.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<(T, Option<i64>), BybitError> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(BybitError::Cancelled { path: path.to_string() }),
            r = self.get_uncancelled(path, query) => r,
        }
    }

    async fn get_uncancelled<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<(T, Option<i64>), BybitError> {
        let url = format!("{}{}", self.base, path);
        let protocol = |detail: String| BybitError::Protocol {
            path: path.to_string(),
            detail,
        };
        let mut failures = 0u32;
        let mut too_many = 0u32;
        loop {
            // Held until this attempt's answer is read (or it fails).
            let _place = self.window.acquire().await;
            RestStats::bump(&self.stats.requests);
            self.stats.weight.fetch_add(1, Ordering::Relaxed);
            let last_error = match self.http.get(&url).query(query).send().await {
                Ok(resp) => match resp.status().as_u16() {
                    200 => match bounds::read_capped(resp, bounds::MAX_REST_BODY).await {
                        Ok(body) => {
                            let envelope: Envelope<T> = serde_json::from_slice(&body)
                                .map_err(|e| protocol(format!("not Bybit's JSON: {e}")))?;
                            match envelope.ret_code {
                                0 => {
                                    let result = envelope.result.ok_or_else(|| {
                                        protocol("retCode 0 without result".into())
                                    })?;
                                    return Ok((result, envelope.time));
                                }
                                rules::TOO_MANY_VISITS => {
                                    too_many += 1;
                                    RestStats::bump(&self.stats.responses_429);
                                    if too_many > 100 {
                                        return Err(BybitError::Rejected {
                                            path: path.to_string(),
                                            code: envelope.ret_code,
                                            msg: envelope.ret_msg,
                                        });
                                    }
                                    tracing::warn!(path, "Bybit says too many visits (retCode 10006); pausing all requests");
                                    self.window.pause(rules::TOO_MANY_VISITS_WAIT);
                                    RestStats::bump(&self.stats.retries);
                                    continue;
                                }
                                code if rules::is_server_error(code) => {
                                    RestStats::bump(&self.stats.responses_5xx);
                                    format!("{} (retCode {code})", envelope.ret_msg)
                                }
                                code => {
                                    return Err(BybitError::Rejected {
                                        path: path.to_string(),
                                        code,
                                        msg: envelope.ret_msg,
                                    })
                                }
                            }
                        }
                        Err(e @ BodyError::TooLarge { .. }) => return Err(protocol(e.to_string())),
                        Err(e) => {
                            RestStats::bump(&self.stats.transport_errors);
                            e.to_string()
                        }
                    },
                    403 => {
                        RestStats::bump(&self.stats.responses_418);
                        return Err(BybitError::Forbidden {
                            path: path.to_string(),
                        });
                    }
                    status @ (429 | 500..=599) => {
                        // 429: "System level frequency protection. Please retry" (Error Codes).
                        if status == 429 {
                            RestStats::bump(&self.stats.responses_429);
                        } else {
                            RestStats::bump(&self.stats.responses_5xx);
                        }
                        format!("HTTP {status}")
                    }
                    status => {
                        let body = bounds::read_capped(resp, bounds::MAX_ERROR_BODY)
                            .await
                            .unwrap_or_default();
                        return Err(protocol(format!(
                            "HTTP {status}: {}",
                            String::from_utf8_lossy(&body[..body.len().min(200)])
                        )));
                    }
                },
                Err(e) => {
                    if e.is_redirect() {
                        return Err(protocol(e.to_string()));
                    }
                    self.stats.transport_failure(&e)
                }
            };
            failures += 1;
            if failures > self.max_retries {
                return Err(BybitError::RetriesExhausted {
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
