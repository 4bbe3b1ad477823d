//! The Job protocol around a load: `started`, `loading` and exactly one terminal telemetry event;
//! `stop`/`ping` commands from the control topic; SIGTERM/SIGINT (a second one exits at once);
//! the metrics endpoint; the progress bar on a terminal; and the final summary line.

use std::io::IsTerminal;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{JobArgs, JobConfig};
use crate::control::{ControlCommand, ControlListener};
use crate::error::{LoaderError, Result, Signal};
use crate::job::{self, JobReport, Upstream};
use crate::metrics;
use crate::registry::RecordKind;
use crate::resume::{self, Resume, TailReader};
use crate::status::{JobStatus, Phase, StopReason};
use crate::telemetry::{EventStatus, JobIdentity, TelemetryPublisher};
use crate::time_range::fmt_ms;

/// Runs a job the way a Kubernetes Job must: the result decides the exit code.
pub async fn run(args: &JobArgs) -> Result<()> {
    let cfg = match args.resolve() {
        Ok(cfg) => cfg,
        Err(e) => {
            report_early_error(args, &e).await;
            return Err(e);
        }
    };
    let identity = JobIdentity {
        queue_id: cfg.queue_id.clone(),
        symbol: cfg.symbols.join(","),
        data_type: cfg.data_type.name(),
        exchange: cfg.venue.as_str().to_string(),
        market: cfg.venue.market_name(cfg.market).to_string(),
        producer: cfg.producer_id.clone(),
        time_range: cfg.range_text(),
        kafka_topic: cfg.topic.clone(),
    };
    let telemetry = Arc::new(TelemetryPublisher::new(
        &cfg.kafka,
        &cfg.events_topic,
        identity,
    ));
    let status = Arc::new(JobStatus::new(cfg.range, &cfg.symbols));
    let stop = CancellationToken::new();
    let done = CancellationToken::new();
    spawn_signal_handler(stop.clone(), status.clone());
    if cfg.metrics_port != 0 {
        let labels = vec![
            ("exchange", cfg.venue.as_str().to_string()),
            ("market", cfg.venue.market_name(cfg.market).to_string()),
            ("type", cfg.data_type.name()),
        ];
        match metrics::serve(cfg.metrics_port, status.clone(), labels, done.clone()).await {
            Ok(addr) => tracing::info!(%addr, "metrics on /metrics, health on /healthz"),
            Err(e) => {
                tracing::warn!(port = cfg.metrics_port, error = %e, "cannot serve metrics (METRICS_PORT); going on without")
            }
        }
    }

    let outcome = run_protocol(&cfg, &telemetry, &status, &stop, &done).await;
    done.cancel();
    let reason = status.stop_reason.get().map(|(r, _)| *r);
    // What an interrupted load did is printed whatever stopped it.
    let stopped_report = match (&outcome, reason) {
        (Ok(r), Some(StopReason::Signal(_))) if r.interrupted => Some(r.clone()),
        _ => None,
    };
    // A signal means the pod is going away before the work is done: whatever the sources were
    // doing ends as `interrupted`, and the exit code says the load is not complete.
    let outcome = match (outcome, reason) {
        (Ok(r), _) if !r.interrupted => Ok(r),
        (Err(e @ LoaderError::Fenced(_)), _) => Err(e),
        (_, Some(StopReason::Signal(signal))) => Err(LoaderError::Signalled {
            signal,
            message: format!(
                "stopped by {} after publishing {} records; the load is not complete, and the next attempt resumes after them",
                signal.name(),
                status.records_written()
            ),
        }),
        (other, _) => other,
    };
    let (event, message, phase) = match &outcome {
        Ok(r) if r.interrupted => (
            EventStatus::Interrupted,
            format!(
                "Stopped on request after publishing {} records",
                r.records_written
            ),
            Phase::Interrupted,
        ),
        Ok(r) => (
            EventStatus::Finished,
            format!("Loaded and published {} records", r.records_written),
            Phase::Finished,
        ),
        Err(e @ (LoaderError::Signalled { .. } | LoaderError::Fenced(_))) => {
            (EventStatus::Interrupted, e.to_string(), Phase::Interrupted)
        }
        Err(e) => (EventStatus::Error, e.to_string(), Phase::Error),
    };
    status.set_phase(phase);
    let mut extra = Map::new();
    match &outcome {
        Ok(r) => {
            // The acknowledged count, never more than what the broker confirmed.
            extra.insert("records_written".into(), json!(r.records_written));
            if r.missing_ids() > 0 {
                extra.insert("missing_ids".into(), json!(r.missing_ids()));
            }
            if r.fallbacks() > 0 {
                let all: Vec<&String> = r.sources.iter().flat_map(|s| &s.fallbacks).collect();
                extra.insert("archive_fallback_files".into(), json!(all));
            }
            let holes: Vec<&String> = r.sources.iter().flat_map(|s| &s.archive_holes).collect();
            if !holes.is_empty() {
                extra.insert("archive_holes".into(), json!(holes));
            }
            // A range past the present was loaded up to here: the range to verify (a later
            // verify of the whole range would rightly miss what had not closed yet).
            if let Some(end) = r.sources.iter().filter_map(|s| s.clamped_end).min() {
                extra.insert("loaded_until".into(), json!(fmt_ms(end)));
            }
        }
        Err(LoaderError::Fenced(_)) => {
            extra.insert("reason".into(), json!("fenced"));
        }
        Err(_) => {}
    }
    if event == EventStatus::Interrupted && !extra.contains_key("reason") {
        extra.insert(
            "reason".into(),
            json!(reason.map_or("stop_command", StopReason::as_str)),
        );
        if let Some(StopReason::Signal(signal)) = reason {
            extra.insert("signal".into(), json!(signal.name()));
        }
    }
    telemetry.emit(event, &message, Some(&status), extra);
    let flush_telemetry = telemetry.clone();
    // The terminal event gets as long as a Kafka connection may take, at most 5 s.
    let wait = cfg.kafka.connect_timeout.min(Duration::from_secs(5));
    let _ = tokio::task::spawn_blocking(move || flush_telemetry.flush(wait)).await;
    if let (Some(report), Some(StopReason::Signal(signal))) = (&stopped_report, reason) {
        print_summary(
            &cfg,
            report,
            &format!("Stopped by {} after publishing", signal.name()),
        );
    }
    let report = outcome?;
    let verb = if report.interrupted {
        "Stopped on request after publishing"
    } else {
        "Loaded and published"
    };
    print_summary(&cfg, &report, verb);
    Ok(())
}

async fn run_protocol(
    cfg: &JobConfig,
    telemetry: &Arc<TelemetryPublisher>,
    status: &Arc<JobStatus>,
    stop: &CancellationToken,
    done: &CancellationToken,
) -> Result<JobReport> {
    // Everything a job needs before `started` connects at once: Binance (unless
    // SOURCE=archive; an unknown symbol is a configuration error), the data producer, the
    // control listener (positioned before `started`, so a stop sent after it is always seen)
    // and the search for what an earlier attempt published. A stop cancels them.
    let (cmd_tx, mut cmd_rx) = mpsc::channel(16);
    let control_kafka = cfg.control_kafka.clone();
    let (topic, queue_id) = (cfg.control_topic.clone(), cfg.queue_id.clone());
    let ready_within = cfg.kafka.connect_timeout.max(Duration::from_secs(5));
    let listener = tokio::task::spawn_blocking(move || {
        ControlListener::start(&control_kafka, &topic, &queue_id, cmd_tx, ready_within)
    });
    // The consumer that looks for an earlier attempt's records connects now; it reads once the
    // data producer has connected.
    let wanted = cfg.resume && cfg.resumable;
    let tail_reader = {
        let k = cfg.kafka.clone();
        tokio::task::spawn_blocking(move || wanted.then(|| TailReader::connect(&k)).transpose())
    };
    // The venue and Kafka at once. The data producer connects first: with transactions its
    // `init_transactions` fences an older instance of this job, without them it waits for the
    // job's lease, so the tail read next is final. The sink's connection is started first: the
    // venue's client loads the system's CA certificates before its first await.
    let connected = tokio::select! {
        both = futures::future::try_join(job::connect_sink(cfg, stop), Upstream::connect(cfg, stop)) => both,
        _ = stop.cancelled() => Err(LoaderError::Cancelled),
    };
    let (mut sink, upstream) = match connected {
        Ok(both) => both,
        Err(LoaderError::Cancelled) => {
            return Ok(JobReport {
                interrupted: true,
                ..JobReport::default()
            })
        }
        Err(e) => return Err(e),
    };
    // What an earlier attempt of this job already published (a restarted pod): continue after
    // it. A topic that does not exist yet holds nothing to resume from.
    let resume = {
        let job = cfg.clone();
        if cfg.resume && !cfg.resumable {
            tracing::info!("a live job without TIME_RANGE resumes only within its own Kubernetes Job (JOB_UID), and none is set: starting from now");
        }
        tokio::spawn(async move {
            let Some(reader) = tail_reader
                .await
                .map_err(|e| LoaderError::Other(e.to_string()))??
            else {
                return Ok(Resume::default());
            };
            tokio::task::spawn_blocking(move || {
                reader.find(&resume::Search {
                    topic: &job.topic,
                    symbols: &job.symbols,
                    venue: job.venue,
                    market: job.rest.market,
                    kind: job.data_type.record_kind(),
                    range: job.range,
                    job: &job.job_id,
                })
            })
            .await
            .map_err(|e| LoaderError::Other(e.to_string()))?
        })
    };
    let listener = listener
        .await
        .map_err(|e| LoaderError::Other(e.to_string()))?;
    let resume = tokio::select! {
        r = resume => r.map_err(|e| LoaderError::Other(e.to_string()))??,
        _ = stop.cancelled() => {
            return Ok(JobReport {
                interrupted: true,
                ..JobReport::default()
            })
        }
    };
    if let Some(n) = resume.partitions {
        if sink.partitions() != Some(n) {
            tracing::warn!(
                partitions_now = ?sink.partitions(),
                partitions_of_the_job = n,
                "the topic's partition count changed since this job's first attempt: its records keep going to the partitions they went to"
            );
        }
        sink.pin_partitions(n);
    }
    for (symbol, n) in &resume.foreign {
        if !resume.points.contains_key(symbol) {
            tracing::warn!(%symbol, records = n, topic = %cfg.topic,
                "the topic holds records of this symbol and type in the range that another job published (or an older loader, whose records carry no loader_job): they are not this job's progress, so its range is loaded from the start");
        }
    }
    status.note_resume(&resume);
    let mut resumed = String::new();
    for (symbol, p) in &resume.points {
        tracing::info!(%symbol, after = %fmt_ms(p.timestamp), ordinal = p.ordinal, messages_read = resume.messages_read,
            "resuming after what an earlier attempt published");
        resumed += &format!("; {symbol} resumes after {}", fmt_ms(p.timestamp));
    }

    telemetry.emit(
        EventStatus::Started,
        &format!(
            "Started loading {} {} for {} ({} producer){resumed}",
            cfg.symbols.join(","),
            cfg.data_type.name(),
            cfg.range_text(),
            sink.mode().as_str()
        ),
        Some(status),
        {
            let mut extra = Map::new();
            extra.insert("delivery_mode".into(), json!(sink.mode().as_str()));
            extra.insert("job_id".into(), json!(cfg.job_id.fingerprint()));
            extra
        },
    );

    // Commands.
    let (t2, s2) = (telemetry.clone(), stop.clone());
    let status2 = status.clone();
    let commands = tokio::spawn(async move {
        while let Some(cmd) = cmd_rx.recv().await {
            match cmd {
                ControlCommand::Stop => {
                    let _ = status2
                        .stop_reason
                        .set((StopReason::StopCommand, std::time::Instant::now()));
                    s2.cancel()
                }
                ControlCommand::Ping { timestamp } => {
                    let mut extra = Map::new();
                    extra.insert(
                        "ping_timestamp".into(),
                        timestamp.unwrap_or(serde_json::Value::Null),
                    );
                    t2.emit(EventStatus::Pong, "pong", Some(&status2), extra);
                }
            }
        }
    });
    // `loading` events and the progress bar.
    let ticker = tokio::spawn(report_progress(
        cfg.telemetry_interval,
        telemetry.clone(),
        status.clone(),
        done.clone(),
    ));

    let result = job::load(cfg, upstream, sink, status.clone(), stop.clone(), &resume).await;
    done.cancel();
    commands.abort();
    let _ = ticker.await;
    // Its thread notices within one poll; the terminal event need not wait for that.
    std::thread::spawn(move || drop(listener));
    result
}

async fn report_progress(
    every: Duration,
    telemetry: Arc<TelemetryPublisher>,
    status: Arc<JobStatus>,
    done: CancellationToken,
) {
    let bar = std::io::stderr().is_terminal().then(|| {
        let pb = indicatif::ProgressBar::new(1000);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {percent:>3}% {msg} ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb
    });
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut redraw = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = done.cancelled() => break,
            _ = tick.tick() => {
                if status.phase() == Phase::Loading {
                    let msg = format!(
                        "Loading: {} records published, {:.0}% of the range",
                        status.records_written(),
                        status.progress() * 100.0
                    );
                    telemetry.emit(EventStatus::Loading, &msg, Some(&status), Map::new());
                }
            }
            _ = redraw.tick(), if bar.is_some() => {
                if let Some(pb) = &bar {
                    pb.set_position((status.progress() * 1000.0) as u64);
                    pb.set_message(format!("{} records, {:.0}/s", status.records_written(), status.records_per_second()));
                }
            }
        }
    }
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
}

/// SIGTERM and SIGINT stop the job gracefully (what was fetched is published, then the job
/// exits with the signal's code, not 0: the load is not complete); a second one exits at once.
fn spawn_signal_handler(stop: CancellationToken, status: Arc<JobStatus>) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                tracing::warn!("cannot install signal handlers");
                return;
            };
            let mut seen = 0;
            loop {
                let sig = tokio::select! {
                    _ = term.recv() => Signal::Term,
                    _ = int.recv() => Signal::Int,
                };
                seen += 1;
                if seen == 1 {
                    tracing::warn!(
                        signal = sig.name(),
                        "stopping: publishing what was fetched, then exiting (send it again to exit at once)"
                    );
                    let _ = status
                        .stop_reason
                        .set((StopReason::Signal(sig), std::time::Instant::now()));
                    stop.cancel();
                } else {
                    eprintln!(
                        "error: second {}: exiting at once without waiting for in-flight records",
                        sig.name()
                    );
                    std::process::exit(sig.exit_code());
                }
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = status
                    .stop_reason
                    .set((StopReason::Signal(Signal::Int), std::time::Instant::now()));
                stop.cancel();
            }
        }
    });
}

/// An error before the job is set up is still reported when the events topic can be reached.
async fn report_early_error(args: &JobArgs, e: &LoaderError) {
    let Some((kafka, topic)) = args.events_target() else {
        return;
    };
    // A refused or unroutable bootstrap would only make us wait: check it answers at all first.
    let first = kafka
        .bootstrap
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let reachable = tokio::task::spawn_blocking(move || {
        first
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .is_some_and(|addr| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
            })
    })
    .await
    .unwrap_or(false);
    if !reachable {
        return;
    }
    let identity = JobIdentity {
        queue_id: args.queue_id.clone().unwrap_or_default(),
        symbol: args.symbol.clone().unwrap_or_default(),
        data_type: args.data_type.clone().unwrap_or_default(),
        exchange: args.exchange.trim().to_ascii_lowercase(),
        market: args.market.trim().to_ascii_lowercase(),
        producer: args.telemetry_producer_id.clone().unwrap_or_default(),
        time_range: args.time_range.clone().unwrap_or_default(),
        kafka_topic: args.kafka_topic.clone().unwrap_or_default(),
    };
    let telemetry = TelemetryPublisher::new(&kafka, &topic, identity);
    telemetry.emit(EventStatus::Error, &e.to_string(), None, Map::new());
    let _ = tokio::task::spawn_blocking(move || telemetry.flush(Duration::from_secs(3))).await;
}

fn print_summary(cfg: &JobConfig, report: &JobReport, verb: &str) {
    for s in &report.sources {
        if let Some(end) = s.clamped_end {
            println!(
                "{}: TIME_RANGE reaches past the present; loaded what exists up to {}",
                s.symbol,
                fmt_ms(end)
            );
        }
        if !s.gaps.is_empty() {
            let noun = match cfg.data_type.record_kind() {
                RecordKind::AggTrades => "aggregate trade",
                _ => "trade",
            };
            println!(
                "{}: Binance is missing {} {noun} id(s) in the range: {:?}",
                s.symbol,
                s.missing_ids(),
                s.gaps
            );
        }
        for f in &s.fallbacks {
            println!("{}: {f}", s.symbol);
        }
        for h in &s.archive_holes {
            println!("{}: {h}", s.symbol);
        }
        if s.from_archive > 0 {
            println!(
                "{}: {} records from {} archive file(s), {} over REST",
                s.symbol, s.from_archive, s.archive_files, s.from_rest
            );
        }
        if s.duplicates_dropped > 0 {
            println!(
                "{}: {} repeated rows dropped (duplicates in archive files or at a seam)",
                s.symbol, s.duplicates_dropped
            );
        }
        if cfg.data_type.is_live() {
            println!(
                "{}: {} records from the stream, {} fetched over REST after gaps; {} reconnect(s), {} order-book resync(s), {} diff-depth sequence break(s)",
                s.symbol, s.from_stream, s.backfilled, s.reconnects, s.resyncs, s.sequence_breaks
            );
        }
    }
    if let Some(r) = &report.resume {
        for (symbol, p) in &r.points {
            println!(
                "{symbol}: resumed after {} (an earlier attempt's last record; {} messages were in the topic, {} read to find it in {} ms)",
                fmt_ms(p.timestamp),
                r.records_in_topic,
                r.messages_read,
                r.elapsed.as_millis()
            );
        }
    }
    println!(
        "{verb} {} records of {} for {} {} into topic {} in {:.2} s ({:.0} records/s; {} requests, weight {}, {} x 429, {} x 418)",
        report.records_written,
        cfg.data_type.name(),
        cfg.symbols.join(","),
        cfg.range_text(),
        cfg.topic,
        report.elapsed.as_secs_f64(),
        report.records_per_second(),
        report.requests,
        report.weight,
        report.responses_429,
        report.responses_418
    );
}
