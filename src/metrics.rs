//! Prometheus `/metrics` and `/healthz` for the running job, read from [`JobStatus`] on each
//! scrape, so the hot path pays nothing for them.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::status::{JobStatus, Phase};
use crate::venue::requests::RestStats;

#[derive(Debug)]
struct JobCollector(Arc<JobStatus>);

impl std::fmt::Debug for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobStatus")
            .field("phase", &self.phase())
            .finish_non_exhaustive()
    }
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: f64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for JobCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        counter(
            &mut enc,
            "loader_records_fetched",
            "Records fetched from the exchange and handed to the sink",
            s.records_fetched.load(std::sync::atomic::Ordering::Relaxed),
        )?;
        counter(
            &mut enc,
            "loader_records_published",
            "Records acknowledged by Kafka",
            s.records_written(),
        )?;
        let bytes = s
            .delivery
            .get()
            .map(|d| d.bytes.load(std::sync::atomic::Ordering::Relaxed))
            .unwrap_or(0);
        counter(
            &mut enc,
            "loader_bytes_published",
            "Payload bytes acknowledged by Kafka",
            bytes,
        )?;
        let rest = s.rest.get();
        let get = |f: fn(&RestStats) -> &std::sync::atomic::AtomicU64| {
            rest.map(|r| RestStats::get(f(r))).unwrap_or(0)
        };
        counter(
            &mut enc,
            "loader_rest_requests",
            "REST requests sent to the exchange",
            get(|r| &r.requests),
        )?;
        counter(
            &mut enc,
            "loader_request_weight_used",
            "Request weight spent at the exchange",
            get(|r| &r.weight),
        )?;
        counter(
            &mut enc,
            "loader_rest_retries",
            "REST requests retried",
            get(|r| &r.retries),
        )?;
        {
            let c = ConstCounter::new(0u64);
            let mut fam = enc.encode_descriptor(
                "loader_rest_responses",
                "Exchange responses that were not successes, by kind",
                None,
                c.metric_type(),
            )?;
            for (kind, v) in [
                ("429", get(|r| &r.responses_429)),
                ("418", get(|r| &r.responses_418)),
                ("5xx", get(|r| &r.responses_5xx)),
                ("transport", get(|r| &r.transport_errors)),
            ] {
                ConstCounter::new(v).encode(fam.encode_family(&[("kind", kind)])?)?;
            }
        }
        if let Some((used, budget, _)) = s.weight() {
            gauge(
                &mut enc,
                "loader_weight_window_used",
                "Request weight used in the current window",
                used as f64,
            )?;
            gauge(
                &mut enc,
                "loader_weight_budget",
                "Request weight this job may use per window",
                budget as f64,
            )?;
        }
        gauge(
            &mut enc,
            "loader_progress_ratio",
            "Share of the time range covered",
            s.progress(),
        )?;
        {
            let g = ConstGauge::new(0i64);
            let mut fam = enc.encode_descriptor(
                "loader_status",
                "1 for the job's current status",
                None,
                g.metric_type(),
            )?;
            let now = s.phase();
            for p in Phase::ALL {
                ConstGauge::new(i64::from(p == now))
                    .encode(fam.encode_family(&[("status", p.as_str())])?)?;
            }
        }
        Ok(())
    }
}

/// Serves `/metrics` and `/healthz` on `0.0.0.0:port` until `stop`; returns the bound address.
/// Every metric carries `labels` (the job's market and type), so one dashboard can tell jobs
/// of several markets apart.
pub async fn serve(
    port: u16,
    status: Arc<JobStatus>,
    labels: Vec<(&'static str, String)>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))).await?;
    let addr = listener.local_addr()?;
    let mut registry = Registry::with_labels(
        labels
            .into_iter()
            .map(|(k, v)| (std::borrow::Cow::Borrowed(k), std::borrow::Cow::Owned(v))),
    );
    registry.register_collector(Box::new(JobCollector(status.clone())));
    let registry = Arc::new(registry);
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                _ = stop.cancelled() => return,
                c = listener.accept() => c,
            };
            let Ok((stream, _)) = conn else { continue };
            let (registry, status) = (registry.clone(), status.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (registry, status) = (registry.clone(), status.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(respond(
                            req.uri().path(),
                            &registry,
                            &status,
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn respond(path: &str, registry: &Registry, status: &JobStatus) -> Response<Full<Bytes>> {
    let (code, ctype, body) = match path {
        "/metrics" => {
            let mut out = String::new();
            match prometheus_client::encoding::text::encode(&mut out, registry) {
                Ok(()) => (
                    200,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    out,
                ),
                Err(_) => (500, "text/plain", "cannot encode metrics\n".to_string()),
            }
        }
        "/healthz" => {
            let phase = status.phase();
            let code = if phase == Phase::Error { 503 } else { 200 };
            (
                code,
                "application/json",
                format!("{{\"status\":\"{}\"}}\n", phase.as_str()),
            )
        }
        _ => (
            404,
            "text/plain",
            "not found: try /metrics or /healthz\n".to_string(),
        ),
    };
    Response::builder()
        .status(code)
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}
