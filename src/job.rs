//! The job: wires one source per symbol to the Kafka sink through a bounded channel, and reports
//! what was loaded.
//!
//! Sources run as tokio tasks (network-bound); the sink runs on its own thread because librdkafka's
//! producer calls block. The channel's bound is the backpressure: a slow broker slows the fetching,
//! and memory stays flat however long the range is.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::binance::rest::RestStats;
use crate::binance::Exchange;
use crate::config::JobConfig;
use crate::error::{LoaderError, Result};
use crate::record::RecordBatch;
use crate::sink::KafkaSink;
use crate::source::{self, SourceContext, SourceSummary};

/// What a finished job did.
#[derive(Debug, Clone)]
pub struct JobReport {
    pub records_written: u64,
    pub bytes: u64,
    pub elapsed: Duration,
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

/// Runs the job to the end. Configuration and connection problems surface before anything is
/// published.
pub async fn run(cfg: &JobConfig) -> Result<JobReport> {
    let started = Instant::now();
    let exchange = Arc::new(Exchange::connect(&cfg.binance, &cfg.symbols).await?);
    let kafka = cfg.kafka.clone();
    let topic = cfg.topic.clone();
    let key = cfg.message_key;
    let mut sink = tokio::task::spawn_blocking(move || KafkaSink::connect(&kafka, &topic, key))
        .await
        .map_err(|e| LoaderError::Other(format!("Kafka connection task failed: {e}")))??;
    tracing::info!(
        symbols = %cfg.symbols.join(","),
        data_type = %cfg.data_type.name(),
        range = %cfg.range,
        topic = %cfg.topic,
        "loading"
    );

    let (tx, mut rx) = mpsc::channel::<RecordBatch>(cfg.binance.concurrency * 2);
    let counters = sink.delivery_counters();
    let sink_thread = std::thread::Builder::new()
        .name("kafka-sink".into())
        .spawn(move || -> Result<(u64, u64)> {
            while let Some(batch) = rx.blocking_recv() {
                sink.publish(&batch)?;
            }
            let acked = sink.flush(Duration::from_secs(120))?;
            Ok((acked, sink.bytes()))
        })
        .map_err(|e| LoaderError::Other(format!("cannot start the Kafka sink thread: {e}")))?;

    let mut sources = JoinSet::new();
    for symbol in &cfg.symbols {
        let ctx = SourceContext {
            exchange: exchange.clone(),
            symbol: Arc::from(symbol.as_str()),
            range: cfg.range,
            page_limit: cfg.binance.page_limit,
            concurrency: cfg.binance.concurrency,
        };
        sources.spawn(source::load(cfg.data_type, ctx, tx.clone()));
    }
    drop(tx);

    let mut summaries = Vec::new();
    let mut failure = None;
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    ticker.tick().await;
    loop {
        tokio::select! {
            joined = sources.join_next() => match joined {
                None => break,
                Some(Ok(Ok(summary))) => summaries.push(summary),
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
            _ = ticker.tick() => {
                let acked = counters.acked.load(Ordering::Relaxed);
                tracing::info!(records_written = acked, rate = (acked as f64 / started.elapsed().as_secs_f64()) as u64, "progress");
            }
        }
    }
    // All senders are gone: the sink drains, flushes and ends.
    let sink_result = tokio::task::spawn_blocking(move || sink_thread.join())
        .await
        .map_err(|e| LoaderError::Other(e.to_string()))?
        .map_err(|_| LoaderError::Other("the Kafka sink thread panicked".into()))?;
    if let Some(e) = failure {
        if let Ok((acked, _)) = &sink_result {
            tracing::error!(records_written = acked, "the load failed; records already acknowledged stay in the topic (their _key makes a rerun harmless)");
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
