//! `demo`: one real job through the production code path with no outside services. The exchange
//! simulator (REST API and bulk archive) runs in-process on loopback and librdkafka's in-process
//! mock cluster stands in for Kafka; afterwards the topic is verified like a user would.

use std::net::SocketAddr;
use std::time::Duration;

use exchange_sim::{SimConfig, SimServer};
use rdkafka::mocking::MockCluster;

use crate::archive::ArchiveConfig;
use crate::config::{
    DataType, DemoArgs, JobConfig, KafkaConfig, Market, MessageKey, Venue, VenueSettings,
};
use crate::error::{LoaderError, Result};
use crate::job;
use crate::source_mode::SourceMode;
use crate::time_range::{TimeRange, DAY_MS};
use crate::verify;

const DEMO_PARTITIONS: i32 = 32;

/// A mock Kafka cluster on its own thread (it is not `Send`), alive until dropped.
/// librdkafka's in-process mock cluster on its own thread (it is `!Send`), serving real TCP on
/// loopback: the demo's Kafka, and the tests' broker where a feature needs what nisshi lacks
/// (transactions).
pub struct MockKafka {
    pub bootstrap: String,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockKafka {
    /// Starts a one-broker cluster holding `topic` with `partitions` partitions.
    pub fn start(topic: &str, partitions: i32) -> Result<MockKafka> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let topic = topic.to_string();
        let thread = std::thread::spawn(move || {
            let cluster = match MockCluster::new(1) {
                Ok(c) => c,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            // The mock cluster keeps only about 5 MB per partition: spread the demo over many.
            if let Err(e) = cluster.create_topic(&topic, partitions, 1) {
                let _ = ready_tx.send(Err(e.to_string()));
                return;
            }
            let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
            let _ = stop_rx.recv();
        });
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| LoaderError::Other("the mock Kafka cluster thread ended".into()))?
            .map_err(|e| {
                LoaderError::Other(format!("cannot start librdkafka's mock cluster: {e}"))
            })?;
        Ok(MockKafka {
            bootstrap,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub async fn run(args: &DemoArgs) -> Result<()> {
    let venue: Venue = args.exchange.parse().map_err(LoaderError::config)?;
    let market = venue
        .parse_market(&args.market)
        .map_err(LoaderError::config)?;
    let spec = crate::venues::spec(venue);
    let symbols = args
        .symbol
        .clone()
        .unwrap_or_else(|| spec.demo_symbols(market).to_string());
    let symbols = crate::config::parse_symbols(&symbols).map_err(LoaderError::config)?;
    let data_type = DataType::parse(&args.data_type, None).map_err(LoaderError::config)?;
    let market_name = venue.market_name(market);
    spec.serves(data_type, market).map_err(|e| {
        LoaderError::config(
            e.replace("TYPE ", "--type ")
                .replace("MARKET=", "--market "),
        )
    })?;
    if args.days == 0 {
        return Err(LoaderError::config("--days must be at least 1"));
    }
    let source: SourceMode = args.source.parse().map_err(LoaderError::config)?;
    spec.serves_from(data_type, source)
        .map_err(|e| LoaderError::config(e.replace("SOURCE=", "--source ")))?;
    let archive_only = source == SourceMode::Archive || spec.archive_only(data_type);
    let now = chrono::Utc::now().timestamp_millis();
    let today = now.div_euclid(DAY_MS) * DAY_MS;
    // With SOURCE=archive the range must end where the archive does: at the last full day.
    // Otherwise at now, or for candles at the last candle boundary at least 2 s ago (a venue
    // that answers closed candles later, OKX, at least a minute ago), so the last candle of
    // the range has closed and settled before the load asks for it (a range ending inside an
    // open candle would leave verify a candle the loader could not have yet).
    let end = if archive_only {
        today
    } else {
        match data_type.interval() {
            Some(iv) => iv
                .align_down(now - 2_000 - spec.candle_delay_ms())
                .max(today - args.days as i64 * DAY_MS + 1),
            None => now - now % 1000,
        }
    };
    let range = match data_type {
        // A live type streams what happens from now on: the next seconds (half a minute for
        // a stream that pushes only when something happens), or for candles until the open
        // candle closes. --days is for history.
        DataType::Live(t) => {
            let start = now - now % 1000 + 2_000;
            let end = match t.candle_interval() {
                Some(iv) => iv.align_up(start + 1),
                None if t.may_stay_silent() => start + 30_000,
                None => start + 10_000,
            };
            TimeRange {
                start_ms: start,
                end_ms: end,
            }
        }
        _ => TimeRange {
            start_ms: today - args.days as i64 * DAY_MS,
            end_ms: end,
        },
    };
    let topic = match venue {
        Venue::Binance => format!("demo-{market}-{}", data_type.name().replace('_', "-")),
        v => format!(
            "demo-{v}-{market_name}-{}",
            data_type.name().replace('_', "-")
        ),
    };

    // One aggregate trade a second on average keeps a few days within the mock cluster.
    let sim_cfg = SimConfig {
        agg_trade_spacing_ms: 1000,
        ..SimConfig::default()
    };
    let sim = SimServer::start(sim_cfg, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| LoaderError::Other(format!("cannot start the exchange simulator: {e}")))?;
    let kafka_mock = MockKafka::start(&topic, DEMO_PARTITIONS)?;
    let (api_url, ws_url) = match market {
        Market::Spot => (sim.base_url(), sim.ws_url()),
        Market::UsdM => (sim.fapi_url(), sim.fws_url()),
        Market::CoinM => (sim.dapi_url(), sim.dws_url()),
    };
    let (shown_url, ws_url) = match venue {
        Venue::Binance => (api_url.clone(), ws_url),
        Venue::Bybit => (sim.bybit_url(), sim.bybit_ws_url()),
        Venue::Okx => (sim.okx_url(), sim.okx_ws_url()),
    };
    println!(
        "exchange simulator: {shown_url}   mock Kafka: {}",
        kafka_mock.bootstrap
    );
    println!(
        "loading {} {market_name} {} {} for {range} into topic {topic} ...",
        venue.title(),
        symbols.join(","),
        data_type.name()
    );

    let kafka = KafkaConfig {
        bootstrap: kafka_mock.bootstrap.clone(),
        security: None,
        overrides: Vec::new(),
        consumer_overrides: Vec::new(),
        connect_timeout: Duration::from_secs(10),
        topic_partitions: DEMO_PARTITIONS,
    };
    let cfg = JobConfig {
        queue_id: topic.clone(),
        symbols: symbols.clone(),
        data_type,
        range: Some(range),
        topic: topic.clone(),
        source,
        archive: ArchiveConfig {
            url: match venue {
                Venue::Binance => sim.base_url(),
                Venue::Bybit => sim.bybit_archive_url(),
                Venue::Okx => sim.okx_archive_url(),
            },
            url_var: spec.archive_url().map_or("", |u| u.var),
            dir: std::env::temp_dir(),
            timeout: Duration::from_secs(30),
            max_retries: 8,
            attempts: 3,
            concurrency: 4,
        },
        producer_id: "loader-producer__demo".into(),
        control_topic: "queue-control".into(),
        events_topic: "queue-events".into(),
        telemetry_interval: Duration::from_secs(5),
        // Keyed by record so the records spread over the partitions.
        message_key: MessageKey::Record,
        metrics_port: 0,
        resume: false,
        shard: crate::config::Shard::WHOLE,
        job_id: crate::identity::JobId::new(&crate::identity::JobIdentityParts {
            queue_id: &topic,
            exchange: venue.as_str(),
            market: market_name,
            data_type: &data_type.name(),
            range: Some((range.start_ms, range.end_ms)),
            job_uid: None,
            symbols: &symbols,
            shard_index: 0,
            shard_count: 1,
        }),
        // The mock cluster supports transactions: the demo runs the production default.
        transactions: crate::sink::TransactionsSetting::Auto,
        stall_timeout: Duration::from_secs(60),
        lease_topic: None,
        shutdown_timeout: Duration::from_secs(20),
        resumable: true,
        venue,
        market,
        page_limit: 1000,
        kline_page_limit: spec.kline_pages(market).0,
        fetch_concurrency: 16,
        rest: VenueSettings {
            market,
            api_url: shown_url,
            ws_url,
            // The simulator, like Binance, wants a key for futures historicalTrades; any will do.
            api_key: Some(crate::secret::Secret::new("loader-producer-demo")),
            rate_limit_share: 0.5,
            concurrency: 16,
            page_limit: 1000,
            kline_page_limit: spec.kline_pages(market).0,
            max_retries: 8,
            max_retry_after: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
        },
        live: crate::config::LiveConfig {
            all_kline_updates: false,
            book_snapshot_interval: Duration::from_secs(1),
            book_depth: 20,
            idle_timeout: Duration::from_secs(60),
            rotate_after: Duration::from_secs(84_600),
            streams_per_connection: market.max_streams_per_connection(),
        },
        kafka: kafka.clone(),
        control_kafka: kafka.clone(),
    };
    let report = job::run(&cfg).await?;
    println!(
        "published {} records ({:.1} MB) in {:.2} s: {:.0} records/s; {} requests, weight {} (budget {} per {:?}), {} x 429, {} x 418",
        report.records_written,
        report.bytes as f64 / 1e6,
        report.elapsed.as_secs_f64(),
        report.records_per_second(),
        report.requests,
        report.weight,
        report.weight_budget,
        report.weight_window,
        report.responses_429,
        report.responses_418,
    );
    for s in &report.sources {
        println!(
            "  {}: {} records from {} archive file(s), {} over REST{}",
            s.symbol,
            s.from_archive,
            s.archive_files,
            s.from_rest,
            if s.fallbacks.is_empty() {
                String::new()
            } else {
                format!("; fallbacks: {:?}", s.fallbacks)
            }
        );
    }
    let mut verified = tokio::task::spawn_blocking(move || {
        let expect = verify::Expectation {
            range: Some(range),
            venue: Some(venue),
            market: Some(market),
            ..Default::default()
        };
        verify::verify_topic(&kafka, &topic, &expect)
    })
    .await
    .map_err(|e| LoaderError::Other(e.to_string()))??;
    if verified.needs_exchange() {
        if matches!(data_type, DataType::Live(_)) {
            // A venue may list a day's trades only in its archive, published after the day
            // (Bybit): the simulated exchange lives through the day before it is asked.
            sim.clock().set_now_ms(sim.clock().now_ms() + DAY_MS);
            println!("(the simulator's clock moves a day ahead, so its archives hold the range)");
        }
        // Like `verify`: what the topic lacks is looked up at the (simulated) exchange, which
        // says whether it is lost or never existed; what cannot be asked fails the check.
        let archive = spec.archive_url().map(|_| cfg.archive.clone());
        let session = crate::venues::connect(venue, &cfg.rest, &symbols, archive)
            .await
            .map_err(|e| format!("the simulator could not be asked ({e})"));
        verified
            .ask_exchange((venue, market), session.as_ref().map_err(String::clone))
            .await;
    }
    print!("{}", verified.render());
    drop(kafka_mock);
    sim.shutdown().await;
    if verified.ok() && verified.records == report.records_written {
        println!("demo OK: every record in the range is in the topic exactly once");
        Ok(())
    } else {
        Err(LoaderError::Verify(format!(
            "demo topic check failed: {} records published, {} read back",
            report.records_written, verified.records
        )))
    }
}
