//! The job: wires one source per symbol (or per group of live streams) to the Kafka sink through
//! a bounded channel, and reports what was loaded.
//!
//! Sources run as tokio tasks (network-bound); the sink runs on its own thread because
//! librdkafka's producer calls block. The channel's bound is the backpressure: a slow broker
//! slows the fetching, and memory stays flat however long the range is. A stop cancels the
//! sources at once (even mid rate-limit wait, download or backoff); what was already fetched is
//! still published and acknowledged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::archive::ArchiveClient;
use crate::config::JobConfig;
use crate::error::{LoaderError, Result};
use crate::record::RecordBatch;
use crate::registry::DataType;
use crate::resume::Resume;
use crate::sink::{KafkaSink, SinkOptions};
use crate::source::history;
use crate::source::live::LiveSource;
use crate::source_mode::SourceMode;
use crate::status::{JobStatus, Phase, StopReason};
use crate::venue::history::{HistoryContext, SourceSummary};
use crate::venue::live::LiveScope;
use crate::venue::requests::RestStats;
use crate::venue::Session;

/// How often an idle sink serves delivery reports (and so notices a failure or a stall).
const SINK_IDLE_TICK: Duration = Duration::from_millis(10);
/// The most batches a live job's sources may have waiting for the sink (one a symbol).
const MAX_LIVE_SLACK: usize = 1024;

/// The next batch (`Some(None)`: every source is done), or `None` once `wait` has passed, for
/// the sink's own thread. It sleeps in the thread itself, woken by the channel: the runtime's
/// timer, armed from outside the runtime, would wake one of its workers at every tick.
fn recv_timeout(
    rx: &mut mpsc::Receiver<RecordBatch>,
    wait: Duration,
) -> Option<Option<RecordBatch>> {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let deadline = std::time::Instant::now() + wait;
    loop {
        if let std::task::Poll::Ready(next) = rx.poll_recv(&mut cx) {
            return Some(next);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        std::thread::park_timeout(left);
    }
}

/// Where the job's records come from: the REST API and/or the archive, as `SOURCE` and `TYPE`
/// need them.
#[derive(Clone)]
pub struct Upstream {
    /// The venue's REST API, through the seam; absent with `SOURCE=archive`.
    pub session: Option<Arc<dyn Session>>,
    pub archive: Option<Arc<ArchiveClient>>,
}

impl Upstream {
    /// Connects to what the job needs: the REST API for live types and unless `SOURCE=archive`
    /// (which never touches it), the archive unless `SOURCE=rest`. `stop` cancels every request
    /// the job will make.
    pub async fn connect(cfg: &JobConfig, stop: &CancellationToken) -> Result<Upstream> {
        if cfg.symbols.is_empty() {
            // A shard with no symbols (more pods than symbols): nothing to connect to.
            tracing::info!(
                shard = cfg.shard.index,
                shards = cfg.shard.count,
                "this shard has no symbols to load"
            );
            return Ok(Upstream {
                session: None,
                archive: None,
            });
        }
        let live = cfg.data_type.is_live();
        let has_archive = crate::venues::spec(cfg.venue).archive_url().is_some();
        let archive = if !live && cfg.source != SourceMode::Rest && has_archive {
            Some(Arc::new(
                ArchiveClient::new(cfg.archive.clone(), stop.clone())
                    .map_err(LoaderError::config)?,
            ))
        } else {
            None
        };
        // SOURCE=archive never asks the venue's REST.
        let session = match cfg.source {
            SourceMode::Archive if !live => None,
            _ => Some(
                crate::venues::spec(cfg.venue)
                    .connect(&cfg.rest, &cfg.symbols, stop.clone(), archive.clone())
                    .await?,
            ),
        };
        Ok(Upstream { session, archive })
    }
}

/// What a job did, finished or stopped.
#[derive(Debug, Clone, Default)]
pub struct JobReport {
    pub records_written: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// The job stopped on request before its sources were done.
    pub interrupted: bool,
    pub sources: Vec<SourceSummary>,
    pub requests: u64,
    pub weight: u64,
    pub responses_429: u64,
    pub responses_418: u64,
    pub weight_budget: u32,
    pub weight_window: Duration,
    /// Archive files downloaded and the bytes they took.
    pub archive_files: u64,
    pub archive_bytes: u64,
    /// Where an earlier attempt stopped, when this one resumed.
    pub resume: Option<Resume>,
}

impl JobReport {
    pub fn records_per_second(&self) -> f64 {
        self.records_written as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn missing_ids(&self) -> u64 {
        self.sources.iter().map(|s| s.missing_ids()).sum()
    }

    pub fn fallbacks(&self) -> usize {
        self.sources.iter().map(|s| s.fallbacks.len()).sum()
    }
}

/// Connects to Kafka (blocking work on a blocking thread). Fails fast on bad credentials or CA;
/// fences any other instance of this job (transactions), or waits for the job's lease until
/// `stop`.
pub async fn connect_sink(cfg: &JobConfig, stop: &CancellationToken) -> Result<KafkaSink> {
    let kafka = cfg.kafka.clone();
    let opts = SinkOptions {
        topic: cfg.topic.clone(),
        key: cfg.message_key,
        job: cfg.job_id.clone(),
        transactions: cfg.transactions,
        stall_timeout: cfg.stall_timeout,
        lease_topic: cfg.lease_topic.clone(),
    };
    let stop = stop.clone();
    tokio::task::spawn_blocking(move || KafkaSink::connect(&kafka, &opts, &|| stop.is_cancelled()))
        .await
        .map_err(|e| LoaderError::Other(format!("Kafka connection task failed: {e}")))?
}

/// Convenience for callers without telemetry: connect to both sides, then load.
pub async fn run(cfg: &JobConfig) -> Result<JobReport> {
    let stop = CancellationToken::new();
    let upstream = Upstream::connect(cfg, &stop).await?;
    let sink = connect_sink(cfg, &stop).await?;
    let status = Arc::new(JobStatus::new(cfg.range, &cfg.symbols));
    load(cfg, upstream, sink, status, stop, &Resume::default()).await
}

/// How one source task ended.
enum Ended {
    Done(Vec<SourceSummary>),
    /// Stopped on request before it was done.
    Stopped,
}

/// How the sources of a job ended.
struct Collected {
    summaries: Vec<SourceSummary>,
    /// A source was stopped before it was done. A stop that arrives after every source has
    /// finished does not count: that load finished.
    interrupted: bool,
    failure: Option<LoaderError>,
}

/// Waits for every source. On a stop, history sources are aborted (`abort_on_stop`); live
/// sources end by themselves, publishing what they received. The first failure aborts the rest.
async fn collect(
    sources: &mut JoinSet<Result<Ended>>,
    stop: &CancellationToken,
    abort_on_stop: bool,
    status: &JobStatus,
) -> Collected {
    let mut out = Collected {
        summaries: Vec::new(),
        interrupted: false,
        failure: None,
    };
    let mut stop_seen = false;
    loop {
        tokio::select! {
            joined = sources.join_next() => match joined {
                None => break,
                Some(Ok(Ok(Ended::Done(done)))) => {
                    for summary in done {
                        status.complete(&summary.symbol);
                        out.summaries.push(summary);
                    }
                }
                Some(Ok(Ok(Ended::Stopped))) => out.interrupted = true,
                Some(Ok(Err(e))) => {
                    out.failure.get_or_insert(e);
                    sources.abort_all();
                }
                // Aborted on stop before it was done.
                Some(Err(e)) if e.is_cancelled() => out.interrupted = true,
                Some(Err(e)) => {
                    out.failure.get_or_insert(LoaderError::Other(format!("a source task failed: {e}")));
                    sources.abort_all();
                }
            },
            _ = stop.cancelled(), if !stop_seen => {
                stop_seen = true;
                tracing::info!("stop requested: no more fetching; publishing what was fetched");
                // History sources are cancelled by the stop token as well; aborting ends them
                // even between two awaits.
                if abort_on_stop {
                    sources.abort_all();
                }
            }
        }
    }
    out
}

/// Loads the range from `upstream` through `sink` until done or `stop` fires.
pub async fn load(
    cfg: &JobConfig,
    upstream: Upstream,
    mut sink: KafkaSink,
    status: Arc<JobStatus>,
    stop: CancellationToken,
    resume: &Resume,
) -> Result<JobReport> {
    let started = Instant::now();
    let _ = status.delivery.set(sink.delivery_counters());
    if let Some(ex) = &upstream.session {
        let _ = status.rest.set(ex.rest_stats());
        let _ = status.limiter.set(ex.budget(cfg.data_type));
    }
    if let Some(a) = &upstream.archive {
        let _ = status.archive.set(a.stats.clone());
    }
    status.set_phase(Phase::Loading);
    tracing::info!(
        symbols = %cfg.symbols.join(","),
        data_type = %cfg.data_type.name(),
        range = %cfg.range_text(),
        source = %cfg.source,
        topic = %cfg.topic,
        "loading"
    );

    // A few pages of slack between fetching and publishing; more only costs memory. A live job
    // hands every symbol's records to the sink at once every flush tick (small batches): room
    // for all of them, so that the sink takes them in one wake-up rather than the source and
    // the sink waking each other for every batch.
    let live_symbols = match cfg.data_type {
        DataType::Live(_) => cfg.symbols.len(),
        _ => 0,
    };
    let (tx, mut rx) = mpsc::channel::<RecordBatch>(live_symbols.clamp(8, MAX_LIVE_SLACK));
    let sink_status = status.clone();
    // After a signal the sink waits for Kafka at most SHUTDOWN_TIMEOUT more.
    let (grace_status, grace) = (status.clone(), cfg.shutdown_timeout);
    sink.set_deadline(Box::new(move || match grace_status.stop_reason.get() {
        Some((StopReason::Signal(_), at)) => Some(*at + grace),
        _ => None,
    }));
    // The sink thread sleeps on the channel, not in librdkafka.
    let sink_thread = std::thread::Builder::new()
        .name("kafka-sink".into())
        .spawn(move || -> Result<(u64, u64)> {
            loop {
                let next = match rx.try_recv() {
                    Ok(batch) => Some(batch),
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                    // Idle: serve delivery reports (and find failures and stalls at once), then
                    // wait for the next batch, waking every SINK_IDLE_TICK to serve them again.
                    Err(mpsc::error::TryRecvError::Empty) => {
                        sink.idle()?;
                        match recv_timeout(&mut rx, SINK_IDLE_TICK) {
                            Some(next) => next,
                            None => continue,
                        }
                    }
                };
                let Some(batch) = next else { break };
                sink.publish(&batch)?;
                sink_status.advance(&batch.symbol, batch.len() as u64, batch.last_timestamp);
            }
            let acked = sink.flush()?;
            let bytes = sink.acked_bytes();
            // Nothing more will be sent: a standby instance may take over now.
            sink.release_lease();
            // Everything is acknowledged; tearing librdkafka down takes a while and nobody
            // needs to wait for it.
            std::thread::spawn(move || drop(sink));
            Ok((acked, bytes))
        })
        .map_err(|e| LoaderError::Other(format!("cannot start the Kafka sink thread: {e}")))?;

    let mut sources: JoinSet<Result<Ended>> = JoinSet::new();
    match cfg.data_type {
        DataType::Live(_) if cfg.symbols.is_empty() => {}
        DataType::Live(live_type) => {
            let session = upstream
                .session
                .clone()
                .ok_or_else(|| LoaderError::Other("live types need the venue's REST API".into()))?;
            let scope = LiveScope {
                live_type,
                range: cfg.range,
                cfg: cfg.live.clone(),
                page_limit: cfg.rest.page_limit,
                kline_page_limit: cfg.rest.kline_page_limit,
                concurrency: cfg.rest.concurrency,
                status: status.clone(),
                stop: stop.clone(),
            };
            let feed = session
                .live(scope, cfg.rest.ws_url.clone())
                .ok_or_else(|| {
                    LoaderError::config(format!(
                        "TYPE {} is not streamed by {}",
                        cfg.data_type.name(),
                        cfg.venue.title()
                    ))
                })?;
            // As many symbols per connection as the venue allows.
            let per_connection = cfg
                .live
                .streams_per_connection
                .min(feed.max_streams_per_connection())
                .max(1);
            for chunk in cfg.symbols.chunks(per_connection) {
                let source = LiveSource {
                    feed: feed.clone(),
                    symbols: chunk.iter().map(|s| Arc::from(s.as_str())).collect(),
                    stop: stop.clone(),
                    resume: resume.points.clone(),
                };
                let tx = tx.clone();
                sources.spawn(async move {
                    let summaries = source.run(tx).await?;
                    Ok(if summaries.iter().any(|s| s.stopped) {
                        Ended::Stopped
                    } else {
                        Ended::Done(summaries)
                    })
                });
            }
        }
        DataType::History(history_type) => {
            let range = cfg.range.ok_or_else(|| {
                LoaderError::config("TIME_RANGE is required for history (api_*) types")
            })?;
            for symbol in &cfg.symbols {
                let ctx = HistoryContext {
                    clock: upstream
                        .session
                        .as_ref()
                        .map(|ex| ex.clock())
                        .unwrap_or_default(),
                    archive: upstream.archive.clone(),
                    mode: cfg.source,
                    venue: cfg.venue,
                    market: cfg.market,
                    symbol: Arc::from(symbol.as_str()),
                    range,
                    page_limit: cfg.page_limit,
                    kline_page_limit: cfg.kline_page_limit,
                    concurrency: cfg.fetch_concurrency,
                    status: status.clone(),
                    stop: stop.clone(),
                    resume: resume.points.get(symbol).copied(),
                };
                let kind = match &upstream.session {
                    Some(ex) => ex.clone().history(history_type).ok_or_else(|| {
                        LoaderError::config(format!(
                            "TYPE {} is not served by {}",
                            cfg.data_type.name(),
                            cfg.venue.title()
                        ))
                    })?,
                    // SOURCE=archive: the venue's archive alone.
                    None => crate::venues::spec(cfg.venue)
                        .archive_history(history_type, cfg.market, upstream.archive.clone())
                        .ok_or_else(|| {
                            LoaderError::config(format!(
                                "SOURCE=archive: {} archives no {}",
                                cfg.venue.title(),
                                cfg.data_type.name()
                            ))
                        })?,
                };
                let load = history::load(kind, ctx, tx.clone());
                sources.spawn(async move {
                    match load.await {
                        Ok(summary) => Ok(Ended::Done(vec![summary])),
                        Err(LoaderError::Cancelled) => Ok(Ended::Stopped),
                        Err(e) => Err(e),
                    }
                });
            }
        }
    }
    drop(tx);

    let Collected {
        mut summaries,
        interrupted,
        failure,
    } = collect(&mut sources, &stop, !cfg.data_type.is_live(), &status).await;
    // All senders are gone: the sink drains, flushes and ends.
    let sink_result = tokio::task::spawn_blocking(move || sink_thread.join())
        .await
        .map_err(|e| LoaderError::Other(e.to_string()))?
        .map_err(|_| LoaderError::Other("the Kafka sink thread panicked".into()))?;
    let (records_written, bytes) = match (sink_result, failure) {
        // A source that found the sink gone reports only that; the sink knows why.
        (Err(sink_error), _) => return Err(sink_error),
        (Ok((acked, _)), Some(e)) => {
            tracing::error!(
                records_written = acked,
                "the load failed; records already acknowledged stay in the topic (their _key makes a rerun harmless)"
            );
            return Err(e);
        }
        (Ok(done), None) => done,
    };
    summaries.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    let mut report = JobReport {
        records_written,
        bytes,
        elapsed: started.elapsed(),
        interrupted,
        sources: summaries,
        resume: resume.is_resumed().then(|| resume.clone()),
        ..JobReport::default()
    };
    if let Some(ex) = &upstream.session {
        let stats = ex.rest_stats();
        report.requests = RestStats::get(&stats.requests);
        report.weight = RestStats::get(&stats.weight);
        report.responses_429 = RestStats::get(&stats.responses_429);
        report.responses_418 = RestStats::get(&stats.responses_418);
        let budget = ex.budget(cfg.data_type);
        report.weight_budget = budget.budget();
        report.weight_window = budget.window();
    }
    if let Some(a) = &upstream.archive {
        use std::sync::atomic::Ordering::Relaxed;
        report.archive_files = a.stats.files.load(Relaxed);
        report.archive_bytes = a.stats.bytes.load(Relaxed);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(symbol: &str) -> SourceSummary {
        SourceSummary {
            symbol: symbol.into(),
            ..SourceSummary::default()
        }
    }

    #[tokio::test]
    async fn a_stop_after_every_source_finished_is_a_finished_load() {
        let status = JobStatus::new(None, &["BTCUSDT".to_string()]);
        let mut sources: JoinSet<Result<Ended>> = JoinSet::new();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        sources.spawn(async move {
            let _ = done_tx.send(());
            Ok(Ended::Done(vec![summary("BTCUSDT")]))
        });
        done_rx.await.unwrap();
        // The source has ended; the stop arrives before the job has wrapped up.
        let stop = CancellationToken::new();
        stop.cancel();
        let c = collect(&mut sources, &stop, true, &status).await;
        assert!(!c.interrupted, "a finished load is finished");
        assert_eq!(c.summaries.len(), 1);
        assert!(c.failure.is_none());
    }

    #[tokio::test]
    async fn a_stop_while_a_source_works_is_an_interrupted_load() {
        let status = JobStatus::new(None, &["BTCUSDT".to_string(), "ETHUSDT".to_string()]);
        let mut sources: JoinSet<Result<Ended>> = JoinSet::new();
        sources.spawn(async { Ok(Ended::Done(vec![summary("BTCUSDT")])) });
        sources.spawn(std::future::pending());
        let stop = CancellationToken::new();
        let trigger = stop.clone();
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            trigger.cancel();
        });
        let c = collect(&mut sources, &stop, true, &status).await;
        assert!(c.interrupted);
        assert_eq!(c.summaries.len(), 1, "what finished is still reported");
    }
}
