//! The benchmark's throughput ceiling: a minimal rdkafka producer that publishes records which are
//! already serialised, with exactly the loader's producer settings, to a topic. `bench/run`
//! compares the loader's records/second against this.
//!
//! The records are the very bytes the loader would publish for the same range: candles and
//! aggregate trades come from the exchange simulator's generator (`exchange_sim::data`) and are
//! serialised with the loader's own `RecordBatch` in pages of 1000, keyed by symbol (the
//! loader's default `KAFKA_MESSAGE_KEY`), each ending with a `loader_job` field of the loader's
//! length (the sink appends one to every record). All of that happens before the clock starts; the
//! timed part is only sending and the final flush, from the first `send` to the flush's
//! completion, with the sink's pattern (`KafkaSink::publish`): a `BaseProducer`, `poll(5 ms)`
//! while the queue is full, `poll(0)` after every page, and the sink's flush (`kafka::flush`).
//!
//! ```sh
//! cargo run --release --example ceiling -- --kafka-bootstrap-servers 127.0.0.1:19092 \
//!     --kafka-topic ceiling-1 --type api_candles_1m --symbol BTCUSDT \
//!     --time-range 2020-01-01:2024-01-01
//! ```
//!
//! With `--ws-url` it is the ceiling of a live stream, the bare pipe: it reads the stream's
//! text frames (a WebSocket connection, nothing parsed) and publishes one of the generated
//! records for each frame as it arrives, until every record is sent. The clock starts once the
//! connection is open.
//!
//! Prints one JSON line: records, payload bytes, generation seconds, publishing seconds (first send
//! to flush complete), the same with the producer's creation, cluster connection and topic creation
//! before it (`seconds_with_connect`), and records/s (of publishing); and the process's CPU
//! seconds (user + system, every thread) over each of those two spans (`cpu_seconds`,
//! `cpu_seconds_with_connect`), so the loader's CPU per record can be set beside the bare
//! producer's (generation, before both, is not counted).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use exchange_sim::data::{self, Data};
use loader_producer::config::KafkaArgs;
use loader_producer::identity::{JobId, JobIdentityParts};
use loader_producer::kafka;
use loader_producer::market::{Market, Venue};
use loader_producer::record::{RankedTrade, RawAggTrade, RawKline, RecordBatch, TradeId};
use loader_producer::registry::{time_rank, DataType, HistoryType};
use loader_producer::sink::{producer_config, DeliveryContext};
use loader_producer::time_range::TimeRange;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Seconds between the batches of a paced run (`--rate`): a live job's stream records reach its
/// producer every 100 ms.
const PACE_TICK: f64 = 0.1;

/// Publishes pre-serialised loader records to Kafka as fast as librdkafka takes them.
#[derive(Debug, Parser)]
#[command(name = "ceiling")]
struct Args {
    /// Topic to publish to (created like the loader creates it)
    #[arg(long, env = "KAFKA_TOPIC")]
    kafka_topic: String,
    /// Symbol whose records are generated
    #[arg(long, env = "SYMBOL", default_value = "BTCUSDT")]
    symbol: String,
    /// api_candles_<interval> or api_trades; with --exchange bybit or okx, api_raw_trades
    #[arg(long = "type", env = "TYPE", default_value = "api_candles_1m")]
    data_type: String,
    /// binance, bybit (its linear market's trades, as its archive has them) or okx (its swap
    /// market's trades)
    #[arg(long, env = "EXCHANGE", default_value = "binance")]
    exchange: String,
    /// Half-open UTC range START:END of the generated records
    #[arg(long, env = "TIME_RANGE")]
    time_range: String,
    /// Mean milliseconds between aggregate trades (the simulator's --agg-trade-spacing-ms)
    #[arg(long, default_value_t = data::DEFAULT_AGG_TRADE_SPACING_MS)]
    agg_trade_spacing_ms: i64,
    /// Rows per page (the loader's PAGE_LIMIT)
    #[arg(long, default_value_t = 1000)]
    page: usize,
    /// Publish at this many records a second instead of as fast as librdkafka takes them: every
    /// 100 ms the records of that tick, as a live job hands its stream's records to its producer
    #[arg(long)]
    rate: Option<f64>,
    /// Publish one record for every text frame of this WebSocket stream as it arrives (the
    /// simulator's combined stream the loader reads), instead of as fast as librdkafka takes them
    #[arg(long, conflicts_with = "rate")]
    ws_url: Option<String>,
    #[command(flatten)]
    kafka: KafkaArgs,
}

/// Records waiting in a list, published one a frame by [`pipe`].
type Queued<'p> = std::iter::Peekable<Box<dyn Iterator<Item = (&'p [u8], &'p [u8])> + 'p>>;

/// The live pipe: reads `url`'s frames and sends one record of `records` for each text frame,
/// with the sink's pattern (`poll(5 ms)` while the queue is full, `poll(0)` now and then).
/// Returns once every record is sent; the clock (`started`, and the CPU then) starts once the
/// connection is open.
fn pipe(
    url: &str,
    producer: &BaseProducer<DeliveryContext>,
    topic: &str,
    mut records: Queued<'_>,
) -> Result<(Instant, f64), Box<dyn std::error::Error>> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
        let started = (Instant::now(), cpu_seconds());
        let mut frames = 0u64;
        while records.peek().is_some() {
            let frame = match ws.next().await {
                Some(frame) => frame?,
                None => return Err("the stream closed before every record was sent".into()),
            };
            match frame {
                Message::Text(_) => {}
                Message::Ping(p) => {
                    use futures_util::SinkExt;
                    ws.send(Message::Pong(p)).await?;
                    continue;
                }
                _ => continue,
            }
            let (payload, key) = records.next().expect("peeked");
            send(producer, topic, payload, key)?;
            frames += 1;
            if frames % 256 == 0 {
                producer.poll(Duration::ZERO);
            }
        }
        Ok(started)
    })
}

/// Queues one record, serving delivery reports while librdkafka's queue is full (the sink's
/// pattern).
fn send(
    producer: &BaseProducer<DeliveryContext>,
    topic: &str,
    payload: &[u8],
    key: &[u8],
) -> Result<(), Box<dyn std::error::Error>> {
    let mut record = BaseRecord::to(topic).payload(payload).key(key);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                // Serving delivery reports is what drains the queue.
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(format!("cannot queue a record: {e}").into()),
        }
    }
}

/// `rows` (in time order) with the ordinal each is keyed by: its millisecond and its place
/// among that millisecond's rows.
fn ranked<T>(rows: Vec<T>, time: impl Fn(&T) -> i64) -> Result<Vec<(i64, T)>, String> {
    let mut last: Option<(i64, u32)> = None;
    rows.into_iter()
        .map(|t| {
            let ms = time(&t);
            let rank = match last {
                Some((at, r)) if at == ms => r + 1,
                _ => 0,
            };
            last = Some((ms, rank));
            Ok((time_rank::ordinal(ms, rank).ok_or("rank")?, t))
        })
        .collect()
}

/// The records the loader would publish for `symbol`, `data_type` and `range`, in pages.
fn generate(
    args: &Args,
    data_type: DataType,
    range: TimeRange,
) -> Result<Vec<RecordBatch>, String> {
    let symbol: Arc<str> = Arc::from(args.symbol.to_ascii_uppercase().as_str());
    let page = args.page.max(1);
    let mut pages = Vec::new();
    // The simulator's data with the benchmark's spacing (candles count its trades).
    let gen = Data::new(
        args.agg_trade_spacing_ms,
        data::DEFAULT_LISTED_AT_MS,
        Vec::new(),
    );
    let venue: Venue = args.exchange.parse()?;
    match (venue, data_type) {
        (Venue::Bybit, DataType::History(HistoryType::Trades)) => {
            // Bybit's linear trades, day by day, keyed by time rank as the loader keys them.
            let category = exchange_sim::bybit::BybitCategory::Linear;
            let mut day = range.start_ms.div_euclid(86_400_000) * 86_400_000;
            let mut rows = Vec::new();
            while day < range.end_ms {
                let trades = exchange_sim::bybit_archive::trades(&gen, category, &symbol, day)
                    .ok_or("the simulator's Bybit linear market does not list the symbol")?;
                rows.extend(
                    ranked(trades, |t| t.time_ms)?
                        .into_iter()
                        .filter(|(_, t)| (range.start_ms..range.end_ms).contains(&t.time_ms)),
                );
                day += 86_400_000;
            }
            for chunk in rows.chunks(page) {
                let mut batch =
                    RecordBatch::new(Venue::Bybit, Market::UsdM, symbol.clone(), chunk.len());
                for (ordinal, t) in chunk {
                    batch
                        .push_ranked_trade(&RankedTrade {
                            ordinal: *ordinal,
                            id: TradeId::Text(&t.id),
                            price: &t.price,
                            quantity: &t.size,
                            time: t.time_ms,
                            is_buyer_maker: t.sell,
                        })
                        .map_err(|e| e.to_string())?;
                }
                pages.push(batch);
            }
        }
        (Venue::Okx, DataType::History(HistoryType::Trades)) => {
            // OKX's swap trades, as its archive and history-trades have them, keyed by time
            // rank as the loader keys them.
            let trades = exchange_sim::okx::trades(&gen, &symbol, range.start_ms, range.end_ms)
                .ok_or("the simulator's OKX venue does not list the instrument")?;
            for chunk in ranked(trades, |t| t.time)?.chunks(page) {
                let mut batch =
                    RecordBatch::new(Venue::Okx, Market::UsdM, symbol.clone(), chunk.len());
                for (ordinal, t) in chunk {
                    batch
                        .push_ranked_trade(&RankedTrade {
                            ordinal: *ordinal,
                            id: TradeId::Number(t.trade_id),
                            price: &t.px,
                            quantity: &t.sz,
                            time: t.time,
                            is_buyer_maker: t.side == "sell",
                        })
                        .map_err(|e| e.to_string())?;
                }
                pages.push(batch);
            }
        }
        (Venue::Bybit | Venue::Okx, other) => {
            return Err(format!(
                "the ceiling generates {venue}'s api_raw_trades, not {}",
                other.name()
            ))
        }
        (_, DataType::History(HistoryType::Candles(interval))) => {
            let name = interval.to_string();
            let times = data::interval_open_times(interval, range.start_ms, range.end_ms);
            for chunk in times.chunks(page) {
                let mut batch =
                    RecordBatch::new(Venue::Binance, Market::Spot, symbol.clone(), chunk.len());
                for &t in chunk {
                    let k = data::kline(&gen, &symbol, interval, t);
                    let row = RawKline(
                        k.open_time,
                        &k.open,
                        &k.high,
                        &k.low,
                        &k.close,
                        &k.volume,
                        k.close_time,
                        &k.quote_volume,
                        k.trades,
                        &k.taker_buy_base,
                        &k.taker_buy_quote,
                        serde::de::IgnoredAny,
                    );
                    batch.push_kline(&name, &row).map_err(|e| e.to_string())?;
                }
                pages.push(batch);
            }
        }
        (_, DataType::History(HistoryType::AggTrades)) => {
            let mut from = gen.first_id_at_or_after(&symbol, range.start_ms);
            loop {
                let rows = gen.trades_from_id(&symbol, from, range.end_ms - 1, page);
                let Some(last) = rows.last() else { break };
                from = last.id + 1;
                let mut batch =
                    RecordBatch::new(Venue::Binance, Market::Spot, symbol.clone(), rows.len());
                for t in &rows {
                    batch
                        .push_agg_trade(&RawAggTrade {
                            a: t.id,
                            p: &t.price,
                            q: &t.qty,
                            f: t.first_trade_id,
                            l: t.last_trade_id,
                            time: t.time,
                            m: t.is_buyer_maker,
                            best_match: Some(t.is_best_match),
                        })
                        .map_err(|e| e.to_string())?;
                }
                pages.push(batch);
            }
        }
        (_, other) => {
            return Err(format!(
                "the ceiling generates api_candles_<interval> and api_trades, not {}",
                other.name()
            ))
        }
    }
    Ok(pages)
}

/// A page's records as the sink sends them: each with the job's field appended.
struct TaggedPage {
    symbol: Arc<str>,
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl TaggedPage {
    fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let r = &self.buf[start..end];
            start = end;
            r
        })
    }
}

/// Appends a job field like the sink's to every record (page by page, so the untagged copy is
/// freed as it goes).
fn tag(pages: Vec<RecordBatch>, args: &Args, range: TimeRange) -> Vec<TaggedPage> {
    let symbols = [args.symbol.to_ascii_uppercase()];
    let (exchange, market) = match args.exchange.as_str() {
        "bybit" => ("bybit", "linear"),
        "okx" => ("okx", "swap"),
        _ => ("binance", "spot"),
    };
    let job = JobId::new(&JobIdentityParts {
        queue_id: &args.kafka_topic,
        exchange,
        market,
        data_type: &args.data_type,
        range: Some((range.start_ms, range.end_ms)),
        job_uid: None,
        symbols: &symbols,
        shard_index: 0,
        shard_count: 1,
    });
    let suffix = job.record_suffix(Some(1));
    pages
        .into_iter()
        .map(|page| {
            let mut t = TaggedPage {
                symbol: page.symbol.clone(),
                buf: Vec::with_capacity(page.iter().map(|(p, _)| p.len() + suffix.len()).sum()),
                ends: Vec::with_capacity(page.len()),
            };
            for (payload, _) in page.iter() {
                t.buf.extend_from_slice(&payload[..payload.len() - 1]);
                t.buf.extend_from_slice(&suffix);
                t.ends.push(t.buf.len());
            }
            t
        })
        .collect()
}

/// CPU seconds (user + system) this process has used so far, every thread: fields 14 and 15
/// of `/proc/self/stat`, in clock ticks of `USER_HZ` (100 on Linux, fixed by its ABI).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let data_type = DataType::parse(&args.data_type, None)?;
    let range = TimeRange::parse(&args.time_range)?;
    let k = args.kafka.resolve()?;

    let gen_started = Instant::now();
    let pages = tag(generate(&args, data_type, range)?, &args, range);
    let gen_seconds = gen_started.elapsed().as_secs_f64();
    let records: u64 = pages.iter().map(|p| p.ends.len() as u64).sum();
    let bytes: u64 = pages
        .iter()
        .flat_map(|p| p.iter().map(|payload| payload.len() as u64))
        .sum();

    let connecting = Instant::now();
    let cpu_connecting = cpu_seconds();
    let producer: BaseProducer<DeliveryContext> =
        producer_config(&k).create_with_context(DeliveryContext::default())?;
    kafka::wait_for_cluster(producer.client(), &producer.context().errors, &k, &|| {
        producer.poll(Duration::ZERO);
    })?;
    kafka::ensure_topic(
        producer.client(),
        &kafka::base_config(&k),
        &args.kafka_topic,
        k.topic_partitions,
        Duration::from_secs(10),
    )?;

    let (started, cpu_started) = if let Some(url) = &args.ws_url {
        let records: Box<dyn Iterator<Item = (&[u8], &[u8])>> = Box::new(
            pages
                .iter()
                .flat_map(|page| page.iter().map(|payload| (payload, page.symbol.as_bytes()))),
        );
        pipe(url, &producer, &args.kafka_topic, records.peekable())?
    } else {
        let started = Instant::now();
        let cpu_started = cpu_seconds();
        let mut sent = 0u64;
        for page in &pages {
            let key = page.symbol.as_bytes();
            for payload in page.iter() {
                if let Some(rate) = args.rate {
                    // The records due by the end of this 100 ms tick go now; then wait for the next.
                    let tick = (sent as f64 / rate / PACE_TICK).floor() * PACE_TICK;
                    let due = Duration::from_secs_f64(tick);
                    if started.elapsed() < due {
                        producer.poll(Duration::ZERO);
                        std::thread::sleep(due - started.elapsed().min(due));
                    }
                    sent += 1;
                }
                send(&producer, &args.kafka_topic, payload, key)?;
            }
            producer.poll(Duration::ZERO);
            if producer.context().failed.load(Ordering::Relaxed) > 0 {
                break;
            }
        }
        (started, cpu_started)
    };
    // The sink's flush: done as soon as the last acknowledgement is served.
    kafka::flush(&producer, Duration::from_secs(300))?;
    let seconds = started.elapsed().as_secs_f64();
    let seconds_with_connect = connecting.elapsed().as_secs_f64();
    let cpu_end = cpu_seconds();

    let acked = producer.context().acked.load(Ordering::Relaxed);
    let failed = producer.context().failed.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "type": data_type.name(),
            "records": records,
            "acked": acked,
            "failed": failed,
            "bytes": bytes,
            "avg_record_bytes": bytes as f64 / records.max(1) as f64,
            "gen_seconds": gen_seconds,
            "seconds": seconds,
            "seconds_with_connect": seconds_with_connect,
            "records_per_s": acked as f64 / seconds.max(1e-9),
            "cpu_seconds": cpu_end - cpu_started,
            "cpu_seconds_with_connect": cpu_end - cpu_connecting,
        })
    );
    if failed > 0 || acked != records {
        return Err(format!("{failed} record(s) failed, {acked} of {records} acknowledged").into());
    }
    Ok(())
}
