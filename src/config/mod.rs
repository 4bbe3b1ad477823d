//! Configuration: every setting is an environment variable (how Kubernetes Jobs are configured)
//! and also a flag. `cli` defines them (and explains a malformed value by its variable),
//! `resolve` validates them into the types here, whose fields are what the rest of the loader
//! reads. Data-type names are the registry's.

mod cli;
mod resolve;

use std::path::PathBuf;
use std::time::Duration;

use crate::archive::ArchiveConfig;
pub use crate::market::Market;
pub use crate::registry::{DataType, LiveType};
use crate::source::SourceMode;
use crate::time_range::TimeRange;
pub use cli::{parse_cli, Cli, Command, DemoArgs, JobArgs, KafkaArgs, VerifyArgs};
pub use resolve::{check_topic_name, parse_properties, parse_symbols};

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Which bytes become the Kafka message key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKey {
    Symbol,
    Record,
    None,
}

/// SASL_SSL settings; absent means PLAINTEXT.
#[derive(Debug, Clone)]
pub struct KafkaSecurity {
    pub user: String,
    pub password: Secret,
    pub ca_path: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub bootstrap: String,
    pub security: Option<KafkaSecurity>,
    /// KAFKA_PRODUCER_CONFIG pairs; values are treated as secrets in logs.
    pub overrides: Vec<(String, Secret)>,
    /// KAFKA_CONSUMER_CONFIG pairs, for the consumers only.
    pub consumer_overrides: Vec<(String, Secret)>,
    pub connect_timeout: Duration,
    pub topic_partitions: i32,
}

#[derive(Debug, Clone)]
pub struct BinanceConfig {
    /// The market every request and stream goes to; `api_url` and `ws_url` are its URLs.
    pub market: Market,
    pub api_url: String,
    pub ws_url: String,
    pub api_key: Option<Secret>,
    pub rate_limit_share: f64,
    pub concurrency: usize,
    /// Rows per page of aggregate trades (and raw trades, up to the market's maximum).
    pub page_limit: u32,
    /// Candles per klines request: the market's cheapest page unless PAGE_LIMIT says otherwise.
    pub kline_page_limit: u32,
    pub max_retries: u32,
    pub max_retry_after: Duration,
    pub request_timeout: Duration,
}

/// Live (WebSocket) settings.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Publish every candle update, not only closed candles.
    pub all_kline_updates: bool,
    /// Cadence of order-book snapshots.
    pub book_snapshot_interval: Duration,
    /// Levels per side in order-book snapshots.
    pub book_depth: usize,
    /// A connection with no data and no ping for this long is dead.
    pub idle_timeout: Duration,
    /// Connections are replaced (overlapping) after this long, before Binance's 24-hour cut.
    pub rotate_after: Duration,
    /// Streams per connection (Binance allows 1024).
    pub streams_per_connection: usize,
}

/// Which share of the job this pod does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// The symbols of this shard: every `count`-th one, starting at `index`.
    pub fn symbols(&self, all: &[String]) -> Vec<String> {
        all.iter()
            .enumerate()
            .filter(|(i, _)| *i as u32 % self.count == self.index)
            .map(|(_, s)| s.clone())
            .collect()
    }
}

/// A validated job.
#[derive(Debug, Clone)]
pub struct JobConfig {
    pub queue_id: String,
    pub symbols: Vec<String>,
    pub data_type: DataType,
    /// Required for REST types; optional for live ones (without it they run until stopped).
    pub range: Option<TimeRange>,
    pub topic: String,
    /// Where history comes from (`SOURCE`).
    pub source: SourceMode,
    pub archive: ArchiveConfig,
    /// Archive files downloaded ahead of the one being published.
    pub archive_concurrency: usize,
    pub producer_id: String,
    pub control_topic: String,
    pub events_topic: String,
    pub telemetry_interval: Duration,
    pub message_key: MessageKey,
    pub metrics_port: u16,
    /// Continue after what an earlier attempt published (`RESUME`).
    pub resume: bool,
    /// This pod's shard and the number of shards (`JOB_COMPLETION_INDEX`, `SHARD_COUNT`).
    pub shard: Shard,
    /// What identifies this job (and so its records, its resume point, its transactional id).
    pub job_id: crate::identity::JobId,
    /// Whether the data producer is transactional (`KAFKA_TRANSACTIONS`).
    pub transactions: crate::sink::TransactionsSetting,
    /// How long Kafka may acknowledge nothing before the job gives up (`KAFKA_STALL_TIMEOUT`).
    pub stall_timeout: Duration,
    /// The topic whose consumer groups hold job leases without transactions
    /// (`KAFKA_LEASE_TOPIC`); `None`: no lease.
    pub lease_topic: Option<String>,
    /// How long a signal leaves for publishing what was fetched (`SHUTDOWN_TIMEOUT`).
    pub shutdown_timeout: Duration,
    /// A live job without a range that has no `JOB_UID` cannot tell its own records from an
    /// earlier Job's: it never resumes.
    pub resumable: bool,
    pub binance: BinanceConfig,
    pub live: LiveConfig,
    pub kafka: KafkaConfig,
    /// Connection of the control listener (consumer credentials when given).
    pub control_kafka: KafkaConfig,
}
