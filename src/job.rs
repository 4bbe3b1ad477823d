//! The job: wires one source per symbol to the Kafka sink through a bounded channel, and reports
//! what was loaded.
//!
//! Sources run as tokio tasks (network-bound); the sink runs on its own thread because librdkafka's
//! producer calls block. The channel's bound is the backpressure: a slow broker slows the fetching,
//! and memory stays flat however long the range is. A stop cancels the sources at once (even mid
//! rate-limit wait or backoff); what was already fetched is still published and acknowledged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::binance::rest::RestStats;
use crate::binance::Exchange;
use crate::config::{DataType, JobConfig};
use crate::error::{LoaderError, Result};
use crate::record::RecordBatch;
use crate::sink::KafkaSink;
use crate::source::live::LiveSource;
use crate::source::{self, SourceContext, SourceSummary};
use crate::status::{LiveStatus, Phase};

/// What a job did, finished or stopped.
#[derive(Debug, Clone, Default)]
pub struct JobReport {
    pub records_written: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub interrupted: bool,
    pub sources: Vec<SourceSummary>,
    pub requests: u64,
    pub weight: u64,
    pub responses_429: u64,
    pub responses_418: u64,
    pub retries: u64,
    pub weight_budget: u32,
    pub weight_window: Duration,
}

impl JobReport {
    pub fn records_per_second(&self) -> f64 {
        self.records_written as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn missing_ids(&self) -> u64 {
        self.sources.iter().map(|s| s.missing_ids()).sum()
    }
}

/// Connects to Kafka (blocking work on a blocking thread). Fails fast on bad credentials or CA.
pub async fn connect_sink(cfg: &JobConfig) -> Result<KafkaSink> {
    let kafka = cfg.kafka.clone();
    let topic = cfg.topic.clone();
    let key = cfg.message_key;
    tokio::task::spawn_blocking(move || KafkaSink::connect(&kafka, &topic, key))
        .await
        .map_err(|e| LoaderError::Other(format!("Kafka connection task failed: {e}")))?
}

/// Convenience for callers without telemetry: connect to both sides, then load.
pub async fn run(cfg: &JobConfig) -> Result<JobReport> {
    let exchange = Arc::new(Exchange::connect(&cfg.binance, &cfg.symbols).await?);
    let sink = connect_sink(cfg).await?;
    let status = Arc::new(LiveStatus::new(cfg.range, &cfg.symbols));
    load(cfg, exchange, sink, status, CancellationToken::new()).await
}

/// Loads the range from `exchange` through `sink` until done or `stop` fires.
pub async fn load(
    cfg: &JobConfig,
    exchange: Arc<Exchange>,
    mut sink: KafkaSink,
    status: Arc<LiveStatus>,
    stop: CancellationToken,
) -> Result<JobReport> {
    let started = Instant::now();
    let _ = status.delivery.set(sink.delivery_counters());
    let _ = status.rest.set(exchange.client.stats.clone());
    let _ = status.limiter.set(exchange.client.limiter().clone());
    status.set_phase(Phase::Loading);
    tracing::info!(
        symbols = %cfg.symbols.join(","),
        data_type = %cfg.data_type.name(),
        range = %cfg.range_text(),
        topic = %cfg.topic,
        "loading"
    );

    // A few pages of slack between fetching and publishing; more only costs memory.
    let (tx, mut rx) = mpsc::channel::<RecordBatch>(8);
    let sink_status = status.clone();
    let sink_thread = std::thread::Builder::new()
        .name("kafka-sink".into())
        .spawn(move || -> Result<(u64, u64)> {
            loop {
                match rx.try_recv() {
                    Ok(batch) => {
                        sink.publish(&batch)?;
                        sink_status.advance(
                            &batch.symbol,
                            batch.len() as u64,
                            batch.last_timestamp,
                        );
                    }
                    // Idle: serve delivery reports while waiting for the next batch.
                    Err(mpsc::error::TryRecvError::Empty) => sink.poll(Duration::from_millis(2)),
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            }
            let acked = sink.flush(Duration::from_secs(120))?;
            let bytes = sink.bytes();
            // Everything is acknowledged; tearing librdkafka down takes a while and nobody
            // needs to wait for it.
            std::thread::spawn(move || drop(sink));
            Ok((acked, bytes))
        })
        .map_err(|e| LoaderError::Other(format!("cannot start the Kafka sink thread: {e}")))?;

    let mut sources: JoinSet<Result<Vec<SourceSummary>>> = JoinSet::new();
    match cfg.data_type {
        DataType::Live(live_type) => {
            // Combined streams: as many symbols per connection as Binance allows.
            for chunk in cfg.symbols.chunks(cfg.live.streams_per_connection) {
                let source = LiveSource {
                    exchange: exchange.clone(),
                    live_type,
                    symbols: chunk.iter().map(|s| Arc::from(s.as_str())).collect(),
                    range: cfg.range,
                    ws_url: cfg.binance.ws_url.clone(),
                    cfg: cfg.live.clone(),
                    page_limit: cfg.binance.page_limit,
                    status: status.clone(),
                    stop: stop.clone(),
                };
                sources.spawn(source.run(tx.clone()));
            }
        }
        rest_type => {
            for symbol in &cfg.symbols {
                let ctx = SourceContext {
                    exchange: exchange.clone(),
                    symbol: Arc::from(symbol.as_str()),
                    range: cfg.range,
                    page_limit: cfg.binance.page_limit,
                    concurrency: cfg.binance.concurrency,
                };
                let load = source::load(rest_type, ctx, tx.clone());
                sources.spawn(async move { load.await.map(|s| vec![s]) });
            }
        }
    }
    drop(tx);

    let mut summaries = Vec::new();
    let mut failure = None;
    let mut interrupted = false;
    loop {
        tokio::select! {
            joined = sources.join_next() => match joined {
                None => break,
                Some(Ok(Ok(done))) => {
                    for summary in done {
                        status.complete(&summary.symbol);
                        summaries.push(summary);
                    }
                }
                Some(Ok(Err(e))) => {
                    failure.get_or_insert(e);
                    sources.abort_all();
                }
                Some(Err(e)) if e.is_cancelled() => {}
                Some(Err(e)) => {
                    failure.get_or_insert(LoaderError::Other(format!("a source task failed: {e}")));
                    sources.abort_all();
                }
            },
            _ = stop.cancelled(), if !interrupted => {
                tracing::info!("stop requested: no more fetching; publishing what was fetched");
                interrupted = true;
                // Live sources stop by themselves, publishing what they received.
                if !cfg.data_type.is_live() {
                    sources.abort_all();
                }
            }
        }
    }
    // A live source may have ended on the stop before the stop branch above ran.
    interrupted |= stop.is_cancelled();
    // All senders are gone: the sink drains, flushes and ends.
    let sink_result = tokio::task::spawn_blocking(move || sink_thread.join())
        .await
        .map_err(|e| LoaderError::Other(e.to_string()))?
        .map_err(|_| LoaderError::Other("the Kafka sink thread panicked".into()))?;
    if let Some(e) = failure {
        if let Ok((acked, _)) = &sink_result {
            tracing::error!(
                records_written = acked,
                "the load failed; records already acknowledged stay in the topic (their _key makes a rerun harmless)"
            );
        }
        return Err(e);
    }
    let (records_written, bytes) = sink_result?;
    summaries.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    let stats = &exchange.client.stats;
    let limiter = exchange.client.limiter();
    Ok(JobReport {
        records_written,
        bytes,
        elapsed: started.elapsed(),
        interrupted,
        sources: summaries,
        requests: RestStats::get(&stats.requests),
        weight: RestStats::get(&stats.weight),
        responses_429: RestStats::get(&stats.responses_429),
        responses_418: RestStats::get(&stats.responses_418),
        retries: RestStats::get(&stats.retries),
        weight_budget: limiter.budget(),
        weight_window: limiter.window(),
    })
}
