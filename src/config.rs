//! Command line and environment: every setting is an environment variable (how Kubernetes Jobs
//! are configured) and also a flag. This module owns parsing, the platform's alias names and the
//! validation that turns raw strings into a [`JobConfig`], with errors that name the variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::archive::ArchiveConfig;
use crate::error::{LoaderError, Result};
pub use crate::registry::{DataType, LiveType};
use crate::source::SourceMode;
use crate::time_range::TimeRange;

const EXIT_CODES: &str = "\
Exit codes:
  0  the load finished (or was stopped on request)
  1  any other failure: Binance, Kafka, delivery; a retry may help
  2  configuration error: fix the variable named in the message

Every option is also read from the environment variable shown beside it; a flag wins over the
variable. Secrets (passwords, API keys) are never printed.";

#[derive(Debug, Parser)]
#[command(
    name = "loader-producer",
    version,
    about = "Loads Binance market data for one symbol set and time range into a Kafka topic, exactly once per record.",
    long_about = "Loads Binance market data (candles, aggregate trades) for one or more symbols and a time \
range into a Kafka topic as one JSON object per message, exactly once per record, within Binance's \
request-weight budget.\n\nExample:\n  SYMBOL=BTCUSDT TYPE=api_candles_1m TIME_RANGE=2024-01-01:2024-02-01 \\\n  \
KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 KAFKA_TOPIC=btc-candles loader-producer",
    after_help = EXIT_CODES,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub job: JobArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the load job (the default when no subcommand is given).
    Run(Box<JobArgs>),
    /// Read a topic back and report records, duplicates, gaps and records outside the range.
    Verify(Box<VerifyArgs>),
    /// Run one real job offline: in-process exchange simulator and Kafka mock cluster.
    Demo(DemoArgs),
}

/// The job's settings, exactly as given.
#[derive(Debug, Clone, Args)]
pub struct JobArgs {
    /// Queue this job belongs to; key of its telemetry events [default: loader-<symbol>-<type>]
    #[arg(long, env = "QUEUE_ID", value_name = "ID")]
    pub queue_id: Option<String>,

    /// Symbol(s) to load, case-insensitive; a comma-separated list loads several, e.g. BTCUSDT,ETHUSDT
    #[arg(long, env = "SYMBOL", value_name = "SYMBOLS")]
    pub symbol: Option<String>,

    /// Data type: api_candles_<interval> (e.g. api_candles_1m), api_candles with INTERVAL, or api_trades (aggregate trades)
    #[arg(long = "type", env = "TYPE", value_name = "TYPE")]
    pub data_type: Option<String>,

    /// Half-open UTC range [start, end): YYYY-MM-DD, RFC 3339 or epoch ms on each side, e.g. 2024-01-01:2024-02-01 (equal dates = that day)
    #[arg(long, env = "TIME_RANGE", value_name = "START:END")]
    pub time_range: Option<String>,

    /// Candle interval for TYPE=api_candles: 1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M
    #[arg(long, env = "INTERVAL", value_name = "INTERVAL")]
    pub interval: Option<String>,

    /// Topic the records are published to [default: QUEUE_ID]
    #[arg(long, env = "KAFKA_TOPIC", value_name = "TOPIC")]
    pub kafka_topic: Option<String>,

    /// Producer id reported in telemetry events [default: loader-producer__<QUEUE_ID>]
    #[arg(long, env = "TELEMETRY_PRODUCER_ID", value_name = "ID")]
    pub telemetry_producer_id: Option<String>,

    /// Topic of control commands (alias env CONTROL_TOPIC)
    #[arg(long, env = "QUEUE_CONTROL_TOPIC", value_name = "TOPIC")]
    pub queue_control_topic: Option<String>,
    #[arg(long, env = "CONTROL_TOPIC", hide = true)]
    pub control_topic_alias: Option<String>,

    /// Topic of telemetry events (alias env TELEMETRY_TOPIC)
    #[arg(long, env = "QUEUE_EVENTS_TOPIC", value_name = "TOPIC")]
    pub queue_events_topic: Option<String>,
    #[arg(long, env = "TELEMETRY_TOPIC", hide = true)]
    pub telemetry_topic_alias: Option<String>,

    /// Seconds between `loading` telemetry events
    #[arg(
        long,
        env = "TELEMETRY_INTERVAL",
        default_value_t = 5.0,
        value_name = "SECONDS"
    )]
    pub telemetry_interval: f64,

    /// Binance REST base URL (the exchange simulator's URL in tests)
    #[arg(
        long,
        env = "BINANCE_API_URL",
        default_value = "https://api.binance.com",
        value_name = "URL"
    )]
    pub binance_api_url: String,

    /// Where history comes from: auto (archive files where they exist, REST for the rest), rest, or archive (never REST)
    #[arg(long, env = "SOURCE", default_value = "auto", value_name = "SOURCE")]
    pub source: String,

    /// Base URL of Binance's bulk archive (daily and monthly zip files)
    #[arg(
        long,
        env = "ARCHIVE_URL",
        default_value = "https://data.binance.vision",
        value_name = "URL"
    )]
    pub archive_url: String,

    /// Archive files downloaded ahead of the one being published (each is kept on disk until published)
    #[arg(
        long,
        env = "ARCHIVE_CONCURRENCY",
        default_value_t = 4,
        value_name = "N"
    )]
    pub archive_concurrency: usize,

    /// Directory for archive downloads until they are published [default: the system temporary directory]
    #[arg(long, env = "ARCHIVE_DIR", value_name = "DIR")]
    pub archive_dir: Option<PathBuf>,

    /// Binance WebSocket base URL (live data types)
    #[arg(
        long,
        env = "BINANCE_WS_URL",
        default_value = "wss://stream.binance.com:9443",
        value_name = "URL"
    )]
    pub binance_ws_url: String,

    /// Binance API key, sent as X-MBX-APIKEY (market data needs none)
    #[arg(
        long,
        env = "BINANCE_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub binance_api_key: Option<String>,

    /// Binance API secret (accepted for compatibility; market data is unsigned)
    #[arg(
        long,
        env = "BINANCE_API_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub binance_api_secret: Option<String>,

    /// Share of the exchange's request-weight budget this job may use, 0 < share <= 1
    #[arg(
        long,
        env = "RATE_LIMIT_SHARE",
        default_value_t = 0.5,
        value_name = "SHARE"
    )]
    pub rate_limit_share: f64,

    /// REST requests in flight at once
    #[arg(
        long,
        env = "FETCH_CONCURRENCY",
        default_value_t = 16,
        value_name = "N"
    )]
    pub fetch_concurrency: usize,

    /// Records per REST page, 1..=1000 (alias env LIMIT)
    #[arg(long, env = "PAGE_LIMIT", value_name = "N")]
    pub page_limit: Option<u32>,
    #[arg(long = "limit", env = "LIMIT", hide = true)]
    pub limit_alias: Option<u32>,

    /// Retries of one request after 5xx, timeouts and dropped connections
    #[arg(long, env = "MAX_RETRIES", default_value_t = 8, value_name = "N")]
    pub max_retries: u32,

    /// Longest Retry-After (429/418) the job waits out before failing, in seconds
    #[arg(
        long,
        env = "MAX_RETRY_AFTER",
        default_value_t = 300,
        value_name = "SECONDS"
    )]
    pub max_retry_after: u64,

    /// Timeout of one REST request, in seconds
    #[arg(
        long,
        env = "REQUEST_TIMEOUT",
        default_value_t = 10.0,
        value_name = "SECONDS"
    )]
    pub request_timeout: f64,

    /// Kafka message key: symbol (order per symbol), record (the record's _key) or none
    #[arg(
        long,
        env = "KAFKA_MESSAGE_KEY",
        default_value = "symbol",
        value_name = "KEY"
    )]
    pub kafka_message_key: String,

    /// Live candles: publish every update of the open candle, not only closed candles
    #[arg(long, env = "WS_ALL_KLINE_UPDATES", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", value_name = "BOOL")]
    pub ws_all_kline_updates: bool,

    /// ws_orderbook: seconds between published order-book snapshots
    #[arg(
        long,
        env = "ORDERBOOK_SNAPSHOT_INTERVAL",
        default_value_t = 1.0,
        value_name = "SECONDS"
    )]
    pub orderbook_snapshot_interval: f64,

    /// ws_orderbook: price levels per side in each snapshot
    #[arg(long, env = "ORDERBOOK_DEPTH", default_value_t = 20, value_name = "N")]
    pub orderbook_depth: usize,

    /// Live types: seconds without data or ping before a connection counts as dead and is replaced
    #[arg(
        long,
        env = "WS_IDLE_TIMEOUT",
        default_value_t = 60.0,
        value_name = "SECONDS"
    )]
    pub ws_idle_timeout: f64,

    /// Live types: seconds after which a connection is replaced by a new, overlapping one (Binance cuts at 24 h)
    #[arg(
        long,
        env = "WS_ROTATE_AFTER",
        default_value_t = 84_600.0,
        value_name = "SECONDS"
    )]
    pub ws_rotate_after: f64,

    /// Live types: streams per WebSocket connection, at most 1024
    #[arg(
        long,
        env = "WS_STREAMS_PER_CONNECTION",
        default_value_t = 1024,
        value_name = "N"
    )]
    pub ws_streams_per_connection: usize,

    /// Port of the Prometheus /metrics and /healthz endpoint; 0 disables it
    #[arg(
        long,
        env = "METRICS_PORT",
        default_value_t = 8080,
        value_name = "PORT"
    )]
    pub metrics_port: u16,

    /// User for the control-topic listener [default: the producer's user]
    #[arg(long, env = "KAFKA_USER_CONSUMER", value_name = "USER")]
    pub kafka_user_consumer: Option<String>,

    /// Password for the control-topic listener [default: the producer's password]
    #[arg(
        long,
        env = "KAFKA_PASSWORD_CONSUMER",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub kafka_password_consumer: Option<String>,

    /// More log output
    #[arg(long, env = "DEBUG", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", value_name = "BOOL")]
    pub debug: bool,

    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// How to reach Kafka; shared by the job and `verify`.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, host:port[,host:port]
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS", value_name = "SERVERS")]
    pub kafka_bootstrap_servers: Option<String>,

    /// SCRAM-SHA-512 user; with a password, the connection is SASL_SSL (alias env KAFKA_USER)
    #[arg(long, env = "KAFKA_USER_PRODUCER", value_name = "USER")]
    pub kafka_user_producer: Option<String>,
    #[arg(long, env = "KAFKA_USER", hide = true)]
    pub kafka_user_alias: Option<String>,

    /// SCRAM-SHA-512 password (alias env KAFKA_PASSWORD)
    #[arg(
        long,
        env = "KAFKA_PASSWORD_PRODUCER",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub kafka_password_producer: Option<String>,
    #[arg(long, env = "KAFKA_PASSWORD", hide = true, hide_env_values = true)]
    pub kafka_password_alias: Option<String>,

    /// PEM file of the CA that signed the brokers' certificates (alias env KAFKA_CA_PATH) [default with SASL: /usr/local/share/ca-certificates/ca.crt if present]
    #[arg(long, env = "CA_PATH", value_name = "FILE")]
    pub ca_path: Option<PathBuf>,
    #[arg(long, env = "KAFKA_CA_PATH", hide = true)]
    pub kafka_ca_path_alias: Option<PathBuf>,

    /// Extra librdkafka properties, key=value[,key=value], e.g. linger.ms=50,compression.type=zstd
    #[arg(
        long,
        env = "KAFKA_PRODUCER_CONFIG",
        hide_env_values = true,
        value_name = "PROPS"
    )]
    pub kafka_producer_config: Option<String>,

    /// Seconds to wait for Kafka to answer before failing
    #[arg(
        long,
        env = "KAFKA_CONNECT_TIMEOUT",
        default_value_t = 10.0,
        value_name = "SECONDS"
    )]
    pub kafka_connect_timeout: f64,

    /// Partitions of the data topic when the loader creates it
    #[arg(
        long,
        env = "KAFKA_TOPIC_PARTITIONS",
        default_value_t = 1,
        value_name = "N"
    )]
    pub kafka_topic_partitions: i32,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Topic to read back
    #[arg(long, env = "KAFKA_TOPIC", value_name = "TOPIC")]
    pub kafka_topic: Option<String>,
    /// Range the topic should hold exactly; without it only duplicates and inner gaps are checked
    #[arg(long, env = "TIME_RANGE", value_name = "START:END")]
    pub time_range: Option<String>,
    /// Symbols the topic should hold (a symbol with no records is then reported)
    #[arg(long, env = "SYMBOL", value_name = "SYMBOLS")]
    pub symbol: Option<String>,
    /// Data type the topic should hold; without it the type is read from each record's _key
    #[arg(long = "type", env = "TYPE", value_name = "TYPE")]
    pub data_type: Option<String>,
    /// Candle interval, for TYPE=api_candles / ws_candles
    #[arg(long, env = "INTERVAL", value_name = "INTERVAL")]
    pub interval: Option<String>,
    /// Binance REST base URL, asked whether a gap is the exchange's own (no data there) or a
    /// lost record; unreachable means every gap counts as missing
    #[arg(
        long,
        env = "BINANCE_API_URL",
        default_value = "https://api.binance.com",
        value_name = "URL"
    )]
    pub binance_api_url: String,
    /// Do not ask Binance about gaps: every gap counts as missing
    #[arg(long)]
    pub offline: bool,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Symbols to load
    #[arg(long, default_value = "BTCUSDT,ETHUSDT")]
    pub symbol: String,
    /// Data type
    #[arg(long = "type", default_value = "api_candles_1m")]
    pub data_type: String,
    /// Days of history before today; the range ends now, so today's part comes over REST and
    /// the whole days from the archive (librdkafka's mock cluster keeps only about 5 MB per
    /// partition, so the demo stays small)
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Where history comes from: auto, rest or archive (the simulator serves both)
    #[arg(long, default_value = "auto")]
    pub source: String,
}

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
    pub connect_timeout: Duration,
    pub topic_partitions: i32,
}

#[derive(Debug, Clone)]
pub struct BinanceConfig {
    pub api_url: String,
    pub ws_url: String,
    pub api_key: Option<Secret>,
    pub rate_limit_share: f64,
    pub concurrency: usize,
    pub page_limit: u32,
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
    pub debug: bool,
    pub metrics_port: u16,
    pub binance: BinanceConfig,
    pub live: LiveConfig,
    pub kafka: KafkaConfig,
    /// Connection of the control listener (consumer credentials when given).
    pub control_kafka: KafkaConfig,
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn first_of(primary: &Option<String>, alias: &Option<String>) -> Option<String> {
    non_empty(primary).or(non_empty(alias)).map(str::to_string)
}

fn seconds(var: &str, v: f64) -> Result<Duration> {
    if v.is_finite() && v > 0.0 && v < 1e7 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(LoaderError::config(format!(
            "{var} must be a positive number of seconds, got {v}"
        )))
    }
}

/// Parses `SYMBOL`: upper-cased, comma-separated, each 1-20 of A-Z 0-9 - _ . like Binance's rule.
pub fn parse_symbols(value: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for part in value.split(',') {
        let s = part.trim().to_ascii_uppercase();
        if s.is_empty() {
            continue;
        }
        let legal = s.len() <= 20
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !legal {
            return Err(format!(
                "SYMBOL {part:?} is not a Binance symbol: expected 1-20 letters or digits such as BTCUSDT, \
                 several separated by commas"
            ));
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    if out.is_empty() {
        return Err(
            "SYMBOL is empty: expected a symbol such as BTCUSDT, or several separated by commas"
                .into(),
        );
    }
    Ok(out)
}

impl KafkaArgs {
    pub fn resolve(&self) -> Result<KafkaConfig> {
        let bootstrap = non_empty(&self.kafka_bootstrap_servers)
            .ok_or_else(|| {
                LoaderError::config(
                    "KAFKA_BOOTSTRAP_SERVERS is not set: expected host:port[,host:port] of the Kafka cluster \
                     (flag --kafka-bootstrap-servers)",
                )
            })?
            .to_string();
        let user = first_of(&self.kafka_user_producer, &self.kafka_user_alias);
        let password = first_of(&self.kafka_password_producer, &self.kafka_password_alias);
        let ca_path = self
            .ca_path
            .clone()
            .or_else(|| self.kafka_ca_path_alias.clone());
        let security = match (user, password) {
            (Some(user), Some(password)) => {
                let ca_path = match ca_path {
                    Some(p) => Some(p),
                    None => {
                        let default = PathBuf::from("/usr/local/share/ca-certificates/ca.crt");
                        default.exists().then_some(default)
                    }
                };
                if let Some(p) = &ca_path {
                    check_ca_file(p)?;
                }
                Some(KafkaSecurity { user, password: Secret::new(password), ca_path })
            }
            (Some(_), None) => {
                return Err(LoaderError::config(
                    "KAFKA_USER_PRODUCER is set but KAFKA_PASSWORD_PRODUCER is not: SCRAM-SHA-512 needs both \
                     (aliases KAFKA_USER / KAFKA_PASSWORD)",
                ))
            }
            (None, Some(_)) => {
                return Err(LoaderError::config(
                    "KAFKA_PASSWORD_PRODUCER is set but KAFKA_USER_PRODUCER is not: SCRAM-SHA-512 needs both \
                     (aliases KAFKA_USER / KAFKA_PASSWORD)",
                ))
            }
            (None, None) => {
                if let Some(p) = &ca_path {
                    check_ca_file(p)?;
                }
                None
            }
        };
        let overrides = match non_empty(&self.kafka_producer_config) {
            None => Vec::new(),
            Some(raw) => parse_properties(raw).map_err(LoaderError::config)?,
        };
        if self.kafka_topic_partitions < 1 {
            return Err(LoaderError::config(format!(
                "KAFKA_TOPIC_PARTITIONS must be at least 1, got {}",
                self.kafka_topic_partitions
            )));
        }
        Ok(KafkaConfig {
            bootstrap,
            security,
            overrides,
            connect_timeout: seconds("KAFKA_CONNECT_TIMEOUT", self.kafka_connect_timeout)?,
            topic_partitions: self.kafka_topic_partitions,
        })
    }
}

fn check_ca_file(p: &std::path::Path) -> Result<()> {
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(LoaderError::config(format!("CA_PATH {} is not a file: expected a PEM CA certificate", p.display()))),
        Err(e) => Err(LoaderError::config(format!(
            "CA_PATH {} cannot be read ({e}): expected the PEM file of the CA that signed the Kafka brokers' certificates",
            p.display()
        ))),
    }
}

/// Parses `KAFKA_PRODUCER_CONFIG` (`key=value,key=value`).
pub fn parse_properties(raw: &str) -> Result<Vec<(String, Secret)>, String> {
    let mut out = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!(
                "KAFKA_PRODUCER_CONFIG item {:?} has no '=': expected key=value[,key=value], e.g. linger.ms=50",
                item.split('=').next().unwrap_or(item)
            ));
        };
        let k = k.trim();
        if k.is_empty()
            || !k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        {
            return Err(format!(
                "KAFKA_PRODUCER_CONFIG key {k:?} is not a librdkafka property name"
            ));
        }
        out.push((k.to_string(), Secret::new(v.trim())));
    }
    Ok(out)
}

impl VerifyArgs {
    /// What the topic should hold, from TIME_RANGE, SYMBOL and TYPE.
    pub fn expectation(&self) -> Result<crate::verify::Expectation> {
        let range = match non_empty(&self.time_range) {
            Some(r) => Some(TimeRange::parse(r).map_err(LoaderError::config)?),
            None => None,
        };
        let symbols = match non_empty(&self.symbol) {
            Some(s) => parse_symbols(s).map_err(LoaderError::config)?,
            None => Vec::new(),
        };
        let kind = match non_empty(&self.data_type) {
            Some(t) => Some(
                DataType::parse(t, self.interval.as_deref())
                    .map_err(LoaderError::config)?
                    .record_kind(),
            ),
            None => None,
        };
        Ok(crate::verify::Expectation {
            range,
            symbols,
            kind,
        })
    }

    /// How verify asks Binance about gaps: a small share of the budget, few retries.
    pub fn binance_config(&self) -> Result<BinanceConfig> {
        let api_url = self
            .binance_api_url
            .trim()
            .trim_end_matches('/')
            .to_string();
        if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
            return Err(LoaderError::config(format!(
                "BINANCE_API_URL {api_url:?} is not an http(s) URL, e.g. https://api.binance.com"
            )));
        }
        Ok(BinanceConfig {
            api_url,
            ws_url: String::new(),
            api_key: None,
            rate_limit_share: 0.2,
            concurrency: 4,
            page_limit: 1000,
            max_retries: 2,
            max_retry_after: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
        })
    }
}

impl JobArgs {
    /// Validates everything; the first problem found is reported, naming its variable.
    pub fn resolve(&self) -> Result<JobConfig> {
        let symbols = parse_symbols(non_empty(&self.symbol).ok_or_else(|| {
            LoaderError::config(
                "SYMBOL is not set: expected a symbol such as BTCUSDT (flag --symbol)",
            )
        })?)
        .map_err(LoaderError::config)?;
        let type_value = non_empty(&self.data_type).ok_or_else(|| {
            LoaderError::config(format!(
                "TYPE is not set (flag --type); valid forms: {}",
                crate::registry::valid_types()
            ))
        })?;
        let data_type =
            DataType::parse(type_value, self.interval.as_deref()).map_err(LoaderError::config)?;
        let range = match non_empty(&self.time_range) {
            Some(r) => Some(TimeRange::parse(r).map_err(LoaderError::config)?),
            None if data_type.is_live() => None,
            None => {
                return Err(LoaderError::config(
                    "TIME_RANGE is not set: expected START:END, e.g. 2024-01-01:2024-02-01 (flag --time-range)",
                ))
            }
        };
        let queue_id = non_empty(&self.queue_id)
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!(
                    "loader-{}-{}",
                    symbols.join("-").to_ascii_lowercase(),
                    data_type.name()
                )
            });
        let topic = non_empty(&self.kafka_topic)
            .unwrap_or(&queue_id)
            .to_string();
        check_topic_name("KAFKA_TOPIC", &topic)?;
        let producer_id = non_empty(&self.telemetry_producer_id)
            .map(str::to_string)
            .unwrap_or_else(|| format!("loader-producer__{queue_id}"));
        let control_topic = first_of(&self.queue_control_topic, &self.control_topic_alias)
            .unwrap_or_else(|| "queue-control".into());
        let events_topic = first_of(&self.queue_events_topic, &self.telemetry_topic_alias)
            .unwrap_or_else(|| "queue-events".into());
        check_topic_name("QUEUE_CONTROL_TOPIC", &control_topic)?;
        check_topic_name("QUEUE_EVENTS_TOPIC", &events_topic)?;

        let share = self.rate_limit_share;
        if !(share > 0.0 && share <= 1.0) {
            return Err(LoaderError::config(format!(
                "RATE_LIMIT_SHARE must be greater than 0 and at most 1 (1 = Binance's whole weight budget), got {share}"
            )));
        }
        if self.fetch_concurrency == 0 || self.fetch_concurrency > 64 {
            return Err(LoaderError::config(format!(
                "FETCH_CONCURRENCY must be between 1 and 64, got {}",
                self.fetch_concurrency
            )));
        }
        let page_limit = self.page_limit.or(self.limit_alias).unwrap_or(1000);
        if !(1..=1000).contains(&page_limit) {
            return Err(LoaderError::config(format!(
                "PAGE_LIMIT (alias LIMIT) must be between 1 and 1000 (Binance's maximum page), got {page_limit}"
            )));
        }
        let message_key = match self.kafka_message_key.trim().to_ascii_lowercase().as_str() {
            "symbol" => MessageKey::Symbol,
            "record" | "_key" => MessageKey::Record,
            "none" => MessageKey::None,
            other => {
                return Err(LoaderError::config(format!(
                    "KAFKA_MESSAGE_KEY {other:?} is not valid: expected symbol, record or none"
                )))
            }
        };
        let api_url = self
            .binance_api_url
            .trim()
            .trim_end_matches('/')
            .to_string();
        if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
            return Err(LoaderError::config(format!(
                "BINANCE_API_URL {api_url:?} is not an http(s) URL, e.g. https://api.binance.com"
            )));
        }
        let ws_url = crate::binance::stream::stream_base(&self.binance_ws_url);
        if !(ws_url.starts_with("ws://") || ws_url.starts_with("wss://")) {
            return Err(LoaderError::config(format!(
                "BINANCE_WS_URL {:?} is not a ws(s) URL, e.g. wss://stream.binance.com:9443 (with or without /ws)",
                self.binance_ws_url
            )));
        }
        let source: SourceMode = self.source.parse().map_err(LoaderError::config)?;
        let archive_url = self.archive_url.trim().trim_end_matches('/').to_string();
        if !(archive_url.starts_with("http://") || archive_url.starts_with("https://")) {
            return Err(LoaderError::config(format!(
                "ARCHIVE_URL {archive_url:?} is not an http(s) URL, e.g. https://data.binance.vision"
            )));
        }
        if !(1..=64).contains(&self.archive_concurrency) {
            return Err(LoaderError::config(format!(
                "ARCHIVE_CONCURRENCY must be between 1 and 64, got {}",
                self.archive_concurrency
            )));
        }
        let archive_dir = self.archive_dir.clone().unwrap_or_else(std::env::temp_dir);
        if !archive_dir.is_dir() {
            return Err(LoaderError::config(format!(
                "ARCHIVE_DIR {} is not a directory: downloads are kept there until published",
                archive_dir.display()
            )));
        }
        let kafka = self.kafka.resolve()?;
        let control_kafka = match (
            non_empty(&self.kafka_user_consumer),
            non_empty(&self.kafka_password_consumer),
        ) {
            (Some(user), Some(password)) => {
                let mut c = kafka.clone();
                let ca_path = c.security.as_ref().and_then(|s| s.ca_path.clone());
                c.security = Some(KafkaSecurity {
                    user: user.to_string(),
                    password: Secret::new(password),
                    ca_path,
                });
                c
            }
            (None, None) => kafka.clone(),
            _ => return Err(LoaderError::config(
                "KAFKA_USER_CONSUMER and KAFKA_PASSWORD_CONSUMER go together: set both or neither",
            )),
        };
        Ok(JobConfig {
            queue_id,
            symbols,
            data_type,
            range,
            topic,
            source,
            archive: ArchiveConfig {
                url: archive_url,
                dir: archive_dir,
                timeout: seconds("REQUEST_TIMEOUT", self.request_timeout)?.max(std::time::Duration::from_secs(30)),
                max_retries: self.max_retries,
                attempts: 3,
            },
            archive_concurrency: self.archive_concurrency,
            producer_id,
            control_topic,
            events_topic,
            telemetry_interval: seconds("TELEMETRY_INTERVAL", self.telemetry_interval)?,
            message_key,
            debug: self.debug,
            metrics_port: self.metrics_port,
            binance: BinanceConfig {
                api_url,
                ws_url,
                api_key: non_empty(&self.binance_api_key).map(Secret::new),
                rate_limit_share: share,
                concurrency: self.fetch_concurrency,
                page_limit,
                max_retries: self.max_retries,
                max_retry_after: Duration::from_secs(self.max_retry_after),
                request_timeout: seconds("REQUEST_TIMEOUT", self.request_timeout)?,
            },
            live: LiveConfig {
                all_kline_updates: self.ws_all_kline_updates,
                book_snapshot_interval: seconds("ORDERBOOK_SNAPSHOT_INTERVAL", self.orderbook_snapshot_interval)?,
                book_depth: match self.orderbook_depth {
                    1..=5000 => self.orderbook_depth,
                    n => return Err(LoaderError::config(format!("ORDERBOOK_DEPTH must be between 1 and 5000, got {n}"))),
                },
                idle_timeout: seconds("WS_IDLE_TIMEOUT", self.ws_idle_timeout)?,
                rotate_after: seconds("WS_ROTATE_AFTER", self.ws_rotate_after)?,
                streams_per_connection: match self.ws_streams_per_connection {
                    1..=1024 => self.ws_streams_per_connection,
                    n => {
                        return Err(LoaderError::config(format!(
                            "WS_STREAMS_PER_CONNECTION must be between 1 and 1024 (Binance's limit), got {n}"
                        )))
                    }
                },
            },
            kafka,
            control_kafka,
        })
    }

    /// Where an `error` event can go when the configuration as a whole is not valid: the Kafka
    /// settings and events topic, if those parts resolve.
    pub fn events_target(&self) -> Option<(KafkaConfig, String)> {
        let kafka = self.kafka.resolve().ok()?;
        let topic = first_of(&self.queue_events_topic, &self.telemetry_topic_alias)
            .unwrap_or_else(|| "queue-events".into());
        check_topic_name("QUEUE_EVENTS_TOPIC", &topic).ok()?;
        Some((kafka, topic))
    }
}

impl JobConfig {
    /// The range as telemetry and logs show it (`live` without one).
    pub fn range_text(&self) -> String {
        match self.range {
            Some(r) => format!(
                "{}:{}",
                crate::time_range::fmt_ms(r.start_ms),
                crate::time_range::fmt_ms(r.end_ms)
            ),
            None => "live".into(),
        }
    }
}

/// Kafka's own rule for topic names.
pub fn check_topic_name(var: &str, topic: &str) -> Result<()> {
    let ok = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(LoaderError::config(format!(
            "{var} {topic:?} is not a valid Kafka topic name: 1-249 characters of a-z A-Z 0-9 . _ -"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_normalised() {
        assert_eq!(parse_symbols("btcusdt").unwrap(), vec!["BTCUSDT"]);
        assert_eq!(
            parse_symbols(" btcusdt, ETHusdt ,btcusdt").unwrap(),
            vec!["BTCUSDT", "ETHUSDT"]
        );
        assert!(parse_symbols(" , ").unwrap_err().contains("SYMBOL"));
        assert!(parse_symbols("BTC/USDT").unwrap_err().contains("SYMBOL"));
    }

    #[test]
    fn properties_parse() {
        let p = parse_properties("linger.ms=50, compression.type=zstd").unwrap();
        assert_eq!(p[0].0, "linger.ms");
        assert_eq!(p[1].1.expose(), "zstd");
        assert!(parse_properties("linger.ms")
            .unwrap_err()
            .contains("KAFKA_PRODUCER_CONFIG"));
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
