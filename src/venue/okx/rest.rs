//! `OkxClient`: every REST call to OKX goes through here, each endpoint paced by its own limit
//! (a share of its requests in any 2 seconds), retried when retrying is safe (HTTP 5xx, a
//! server-error `code`, timeouts, dropped connections: market data is read-only), paused on
//! `code` 50011, and turned into a clear error when OKX says the request is wrong.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::rules;
use crate::bounds::{self, BodyError};
use crate::venue::requests::{RequestWindow, RestStats};
use crate::venue::VenueSettings;

/// Why a request to OKX failed for good.
#[derive(Debug, thiserror::Error)]
pub enum OkxError {
    #[error("OKX rejected {path}: {msg} (code {code})")]
    Rejected {
        path: String,
        code: String,
        msg: String,
    },
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

/// OKX's envelope: `code` "0" and the rows in `data`, or an error code and message. The code
/// is a string in every example of the documentation; some answers have carried a number.
#[derive(Deserialize)]
struct Envelope<T> {
    code: serde_json::Value,
    #[serde(default)]
    msg: String,
    #[serde(default = "Vec::new")]
    data: Vec<T>,
}

fn code_text(code: &serde_json::Value) -> String {
    match code {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub struct OkxClient {
    http: reqwest::Client,
    base: String,
    /// One window per endpoint: OKX limits each apart.
    windows: BTreeMap<&'static str, Arc<RequestWindow>>,
    pub stats: Arc<RestStats>,
    max_retries: u32,
    cancel: CancellationToken,
}

impl OkxClient {
    pub fn new(cfg: &VenueSettings, cancel: CancellationToken) -> Result<Self, String> {
        let http = cfg
            .http_client()?
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let windows = rules::ENDPOINTS
            .into_iter()
            .map(|path| {
                let limit = rules::endpoint_limit(path);
                let window = RequestWindow::new(limit, rules::WINDOW, cfg.rate_limit_share);
                (path, Arc::new(window))
            })
            .collect();
        Ok(OkxClient {
            http,
            base: cfg.api_url.clone(),
            windows,
            stats: Arc::new(RestStats::default()),
            max_retries: cfg.max_retries,
            cancel,
        })
    }

    /// The window of `path` (every endpoint the loader asks has one).
    pub fn window(&self, path: &'static str) -> Arc<RequestWindow> {
        self.windows
            .get(path)
            .cloned()
            .expect("every endpoint the loader asks has a window")
    }

    /// GETs `path` with `query` and returns its `data`; retries what is safe to retry. Ends
    /// with [`OkxError::Cancelled`] as soon as the job stops.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &'static str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>, OkxError> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(OkxError::Cancelled { path: path.to_string() }),
            r = self.get_uncancelled(path, query) => r,
        }
    }

    async fn get_uncancelled<T: DeserializeOwned>(
        &self,
        path: &'static str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>, OkxError> {
        let url = format!("{}{}", self.base, path);
        let protocol = |detail: String| OkxError::Protocol {
            path: path.to_string(),
            detail,
        };
        let window = self.window(path);
        let mut failures = 0u32;
        let mut too_many = 0u32;
        loop {
            // Held until this attempt's answer is read (or it fails).
            let place = window.acquire().await;
            RestStats::bump(&self.stats.requests);
            self.stats.weight.fetch_add(1, Ordering::Relaxed);
            let last_error = match self.http.get(&url).query(query).send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    // Error answers carry the envelope too (400, 429, 5xx).
                    match bounds::read_capped(resp, bounds::MAX_REST_BODY).await {
                        Ok(body) => match serde_json::from_slice::<Envelope<T>>(&body) {
                            Ok(envelope) => {
                                let code = code_text(&envelope.code);
                                match code.as_str() {
                                    "0" if status == 200 => return Ok(envelope.data),
                                    rules::TOO_MANY_REQUESTS => {
                                        too_many += 1;
                                        RestStats::bump(&self.stats.responses_429);
                                        if too_many > 100 {
                                            return Err(OkxError::Rejected {
                                                path: path.to_string(),
                                                code,
                                                msg: envelope.msg,
                                            });
                                        }
                                        tracing::warn!(
                                            path,
                                            "OKX says too many requests (code 50011); pausing this endpoint"
                                        );
                                        window.pause(rules::WINDOW);
                                        RestStats::bump(&self.stats.retries);
                                        drop(place);
                                        continue;
                                    }
                                    c if rules::is_server_error(c) || status >= 500 => {
                                        RestStats::bump(&self.stats.responses_5xx);
                                        format!("{} (code {c}, HTTP {status})", envelope.msg)
                                    }
                                    _ => {
                                        return Err(OkxError::Rejected {
                                            path: path.to_string(),
                                            code,
                                            msg: envelope.msg,
                                        })
                                    }
                                }
                            }
                            // Not OKX's JSON: a proxy's or load balancer's page.
                            Err(_) if status >= 500 || status == 429 => {
                                RestStats::bump(&self.stats.responses_5xx);
                                format!("HTTP {status}")
                            }
                            Err(e) => {
                                return Err(protocol(format!(
                                    "HTTP {status}, not OKX's JSON ({e}): {}",
                                    String::from_utf8_lossy(&body[..body.len().min(200)])
                                )))
                            }
                        },
                        Err(e @ BodyError::TooLarge { .. }) => return Err(protocol(e.to_string())),
                        Err(e) => {
                            RestStats::bump(&self.stats.transport_errors);
                            e.to_string()
                        }
                    }
                }
                Err(e) => {
                    if e.is_redirect() {
                        return Err(protocol(e.to_string()));
                    }
                    self.stats.transport_failure(&e)
                }
            };
            drop(place);
            failures += 1;
            if failures > self.max_retries {
                return Err(OkxError::RetriesExhausted {
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
