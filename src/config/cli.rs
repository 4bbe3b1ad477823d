//! The command line: every setting as a flag and an environment variable, with help text, and
//! the rewriting of clap's errors for malformed values so that they name the variable a
//! Kubernetes user set, not only the flag.

use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, Parser, Subcommand};

fn long_about() -> String {
    let kinds: Vec<String> = crate::registry::TYPES
        .iter()
        .map(|t| {
            let markets: Vec<&str> = t.markets.iter().map(|m| m.as_str()).collect();
            format!("  {:<34} {:<16} {}", t.name, markets.join(","), t.what)
        })
        .collect();
    format!(
        "Loads Binance market data for one or more symbols into a Kafka topic as one JSON object per \
message, exactly once per record: history of a time range from the data.binance.vision archive and the \
REST API within Binance's request-weight budget, or live data from WebSocket streams, on the spot \
market or the USDⓈ-M and COIN-M futures markets (MARKET). With EXCHANGE=bybit, candles of Bybit's \
spot, linear and inverse markets and funding rates and open interest of its contracts from its REST \
API within its IP limit, and trades of every market from its archive (BYBIT_ARCHIVE_URL). With \
EXCHANGE=okx, candles of OKX's spot, swap and futures markets, funding rates of its perpetuals (the \
last three months) and open interest of its contracts (the latest 1,440 periods) from its REST API \
within the limit of each endpoint, and trades of every market from its archive (OKX_ARCHIVE_URL) and, \
for the last three months, its REST API.\n\nData types on Binance \
(TYPE, the markets that offer them, what they load):\n{}\n\nExample:\n  SYMBOL=BTCUSDT TYPE=api_candles_1m TIME_RANGE=2024-01-01:2024-02-01 \\\n  \
KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 KAFKA_TOPIC=btc-candles loader-producer",
        kinds.join("\n")
    )
}

fn type_help() -> String {
    format!("Data type: {}", crate::registry::valid_types())
}

/// Parses the command line and the environment. A malformed value is reported with the
/// environment variable it came from (how a Kubernetes user set it) as well as the flag, and
/// exits 2 like every configuration error; `--help` and `--version` print and exit 0.
pub fn parse_cli() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match explain_value_error(&e) {
            Some(message) => {
                eprintln!("error: {message}");
                std::process::exit(2);
            }
            None => e.exit(),
        },
    }
}

/// `VAR (flag --flag): invalid value "x": why` for a value clap could not parse.
pub fn explain_value_error(e: &clap::Error) -> Option<String> {
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let flag = arg.split_whitespace().next()?.trim_start_matches("--");
    let env = env_of_flag(&Cli::command(), flag)?;
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) => v.clone(),
        _ => String::new(),
    };
    let why = match (std::error::Error::source(e), e.get(ContextKind::ValidValue)) {
        (_, Some(ContextValue::Strings(valid))) => format!("expected one of {}", valid.join(", ")),
        (Some(source), _) => source.to_string(),
        (None, _) => "not valid".to_string(),
    };
    let expected = e
        .get(ContextKind::InvalidArg)
        .and_then(|_| {
            arg.split_whitespace()
                .nth(1)
                .map(|v| format!(" (expected {v})"))
        })
        .unwrap_or_default();
    Some(format!(
        "{env}={value:?} is not valid (flag --{flag}): {why}{expected}"
    ))
}

/// The environment variable of the flag `--long`, searched in `cmd` and its subcommands.
fn env_of_flag(cmd: &clap::Command, long: &str) -> Option<String> {
    cmd.get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .or_else(|| cmd.get_subcommands().find_map(|sub| env_of_flag(sub, long)))
}

const EXIT_CODES: &str = "\
Exit codes:
  0    the load finished, or a `stop` command on the control topic stopped it
  1    any other failure: Binance, Kafka, delivery; a retry may help (it resumes)
  2    configuration error: a retry repeats it; fix the variable named in the message. Of
       Kafka's answers only credentials it refuses or a certificate that cannot be verified
       count (a dropped TLS handshake, as in a broker's restart, is 1)
  3    fenced: a second instance of this job took over (transactional producers)
  4    banned: the exchange refuses this IP for longer than the job waits (Binance 418 or a
       long Retry-After, a 403 from Binance's firewall or Bybit's IP limit); start the Job
       again after the ban
  143  SIGTERM (130: SIGINT) stopped the load before it was done; what was fetched was
       published, and the next attempt resumes after it

Every option is also read from the environment variable shown beside it; a flag wins over the
variable. Secrets (passwords, API keys) are never printed.";

#[derive(Debug, Parser)]
#[command(
    name = "loader-producer",
    version,
    about = "Loads Binance, Bybit or OKX market data for one symbol set and time range into a Kafka topic, exactly once per record.",
    long_about = long_about(),
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
    /// Print the JSON Schema of every record kind (or write one file per kind with --out).
    Schema(SchemaArgs),
}

/// `loader-producer schema`.
#[derive(Debug, Clone, Args)]
pub struct SchemaArgs {
    /// Write `<DIR>/v<version>/<kind>.json` for every record kind instead of printing one
    /// document with all of them
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// The job's settings, exactly as given.
#[derive(Debug, Clone, Args)]
pub struct JobArgs {
    /// Queue this job belongs to; key of its telemetry events [default: loader-<symbols>-<type>-<start>-<end>, without the range for live jobs without one]
    #[arg(long, env = "QUEUE_ID", value_name = "ID")]
    pub queue_id: Option<String>,

    /// Symbol(s) to load, case-insensitive; a comma-separated list loads several, e.g. BTCUSDT,ETHUSDT
    #[arg(long, env = "SYMBOL", value_name = "SYMBOLS")]
    pub symbol: Option<String>,

    #[arg(long = "type", env = "TYPE", value_name = "TYPE", help = type_help())]
    pub data_type: Option<String>,

    /// Half-open UTC range [start, end): YYYY-MM-DD, RFC 3339 or epoch ms on each side, e.g. 2024-01-01:2024-02-01 (equal dates = that day)
    #[arg(long, env = "TIME_RANGE", value_name = "START:END")]
    pub time_range: Option<String>,

    /// Candle interval for TYPE=api_candles or ws_candles: 1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M
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

    /// Exchange to load from: binance, bybit or okx
    #[arg(
        long,
        env = "EXCHANGE",
        default_value = "binance",
        value_name = "EXCHANGE"
    )]
    pub exchange: String,

    /// Market: on Binance spot, usdm (USDⓈ-M futures; also um, usd-m, futures) or coinm (COIN-M futures; also cm, coin-m, delivery); on Bybit spot, linear or inverse; on OKX spot, swap (perpetuals) or futures (dated)
    #[arg(long, env = "MARKET", default_value = "spot", value_name = "MARKET")]
    pub market: String,

    /// Bybit REST base URL (EXCHANGE=bybit)
    #[arg(
        long,
        env = "BYBIT_API_URL",
        default_value = bybit_url(|s| s.rest_url(crate::market::Market::Spot)),
        value_name = "URL"
    )]
    pub bybit_api_url: String,

    /// Bybit's public stream host (EXCHANGE=bybit, live types; /v5/public/<category> is added per market)
    #[arg(
        long,
        env = "BYBIT_WS_URL",
        default_value = bybit_url(|s| s.ws_url(crate::market::Market::Spot).expect("Bybit streams")),
        value_name = "URL"
    )]
    pub bybit_ws_url: String,

    /// OKX REST base URL (EXCHANGE=okx)
    #[arg(
        long,
        env = "OKX_API_URL",
        default_value = okx_url(|s| s.rest_url(crate::market::Market::Spot)),
        value_name = "URL"
    )]
    pub okx_api_url: String,

    /// OKX's WebSocket host (EXCHANGE=okx, live types; /ws/v5/public or /ws/v5/business is added per channel)
    #[arg(
        long,
        env = "OKX_WS_URL",
        default_value = okx_url(|s| s.ws_url(crate::market::Market::Spot).expect("OKX streams")),
        value_name = "URL"
    )]
    pub okx_ws_url: String,

    /// Binance spot REST base URL (the exchange simulator's URL in tests)
    #[arg(
        long,
        env = "BINANCE_API_URL",
        default_value = "https://api.binance.com",
        value_name = "URL"
    )]
    pub binance_api_url: String,

    /// USDⓈ-M futures REST base URL (MARKET=usdm)
    #[arg(
        long,
        env = "BINANCE_FAPI_URL",
        default_value = "https://fapi.binance.com",
        value_name = "URL"
    )]
    pub binance_fapi_url: String,

    /// COIN-M futures REST base URL (MARKET=coinm)
    #[arg(
        long,
        env = "BINANCE_DAPI_URL",
        default_value = "https://dapi.binance.com",
        value_name = "URL"
    )]
    pub binance_dapi_url: String,

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

    /// Base URL of Bybit's archive of trades (daily .csv.gz files; EXCHANGE=bybit)
    #[arg(
        long,
        env = "BYBIT_ARCHIVE_URL",
        default_value = bybit_url(|s| s.archive_url().expect("Bybit has an archive")),
        value_name = "URL"
    )]
    pub bybit_archive_url: String,

    /// Base URL of OKX's archive of trades (daily zips under cdn/okex/traderecords; EXCHANGE=okx)
    #[arg(
        long,
        env = "OKX_ARCHIVE_URL",
        default_value = okx_url(|s| s.archive_url().expect("OKX has an archive")),
        value_name = "URL"
    )]
    pub okx_archive_url: String,

    /// Archive files on disk at a time for the whole job, however many symbols (each is kept until published)
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

    /// Binance spot WebSocket base URL (live data types)
    #[arg(
        long,
        env = "BINANCE_WS_URL",
        default_value = "wss://stream.binance.com:9443",
        value_name = "URL"
    )]
    pub binance_ws_url: String,

    /// USDⓈ-M futures WebSocket base URL (MARKET=usdm; routed /public and /market paths are added per stream)
    #[arg(
        long,
        env = "BINANCE_FWS_URL",
        default_value = "wss://fstream.binance.com",
        value_name = "URL"
    )]
    pub binance_fws_url: String,

    /// COIN-M futures WebSocket base URL (MARKET=coinm)
    #[arg(
        long,
        env = "BINANCE_DWS_URL",
        default_value = "wss://dstream.binance.com",
        value_name = "URL"
    )]
    pub binance_dws_url: String,

    #[command(flatten)]
    pub access: AccessArgs,

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

    /// REST pages in flight or waiting to be published, for the whole job however many symbols
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

    /// Live types: seconds without any frame before a connection counts as dead and is replaced (the loader pings halfway through, so a quiet stream that answers stays)
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

    /// Live types: streams per WebSocket connection [default and maximum: 1024 on spot and usdm, 200 on coinm]
    #[arg(long, env = "WS_STREAMS_PER_CONNECTION", value_name = "N")]
    pub ws_streams_per_connection: Option<usize>,

    /// Continue after what an earlier attempt of this job already published to KAFKA_TOPIC (needs KAFKA_MESSAGE_KEY=symbol); false loads the whole range again
    #[arg(long, env = "RESUME", value_parser = clap::builder::BoolishValueParser::new(), default_value = "true", value_name = "BOOL")]
    pub resume: bool,

    /// Pods that share this job (an Indexed Job's completions): each loads every SHARD_COUNT-th symbol and takes 1/SHARD_COUNT of the rate budget
    #[arg(long, env = "SHARD_COUNT", default_value_t = 1, value_name = "N")]
    pub shard_count: u32,

    /// This pod's shard, 0..SHARD_COUNT; required when SHARD_COUNT is above 1 (Kubernetes sets it in Indexed Jobs, completionMode: Indexed) [default with SHARD_COUNT=1: 0]
    #[arg(long, env = "JOB_COMPLETION_INDEX", value_name = "INDEX")]
    pub job_completion_index: Option<u32>,

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

    /// Exactly once against a second instance of this job: auto (a transactional producer whose id is the job's, which fences an older instance, where the Kafka cluster supports transactions; the idempotent producer where it does not), on (transactions or fail), off (idempotent only)
    #[arg(
        long,
        env = "KAFKA_TRANSACTIONS",
        default_value = "auto",
        value_name = "MODE"
    )]
    pub kafka_transactions: String,

    /// Fences a second instance of a job where the Kafka cluster refuses transactions: a one-partition topic (created if missing, e.g. loader-producer-leases) whose consumer group loader-producer-lease-<job fingerprint> holds the job's lease; a second instance waits until the first is done or stops answering for 10 s. Unset: no lease. The holder also stops (exit 3, the next attempt resumes) when it loses the group coordinator for 10 s
    #[arg(long, env = "KAFKA_LEASE_TOPIC", value_name = "TOPIC")]
    pub kafka_lease_topic: Option<String>,

    /// Seconds Kafka may acknowledge nothing while records wait before the job gives up (exit 1; the next attempt resumes); records never time out on their own, so an outage shorter than this is ridden out with nothing lost
    #[arg(
        long,
        env = "KAFKA_STALL_TIMEOUT",
        default_value_t = 300.0,
        value_name = "SECONDS"
    )]
    pub kafka_stall_timeout: f64,

    /// Seconds a SIGTERM or SIGINT leaves for publishing what was fetched before the job exits anyway (keep it below the pod's terminationGracePeriodSeconds)
    #[arg(
        long,
        env = "SHUTDOWN_TIMEOUT",
        default_value_t = 20.0,
        value_name = "SECONDS"
    )]
    pub shutdown_timeout: f64,

    /// The Kubernetes Job's uid (the manifests set it from the pod's batch.kubernetes.io/controller-uid label): a live job without TIME_RANGE resumes only records of its own Kubernetes Job, and without JOB_UID never resumes
    #[arg(long, env = "JOB_UID", value_name = "UID")]
    pub job_uid: Option<String>,

    /// More log output
    #[arg(long, env = "DEBUG", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", value_name = "BOOL")]
    pub debug: bool,

    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// How Binance is reached beyond its URLs; shared by the job and `verify`.
#[derive(Debug, Clone, Args)]
pub struct AccessArgs {
    /// Binance API key, sent as X-MBX-APIKEY and only to the configured REST URL. Market data needs none, except futures historicalTrades: TYPE api_raw_trades on usdm or coinm over REST, and verify asking about gaps in such a topic
    #[arg(
        long,
        env = "BINANCE_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub binance_api_key: Option<String>,

    /// Allow plain http:// and ws:// URLs to hosts that are not loopback (a simulator or proxy on a network you trust); without it only https/wss, or http/ws to localhost, are accepted
    #[arg(long, env = "ALLOW_INSECURE_URLS", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", value_name = "BOOL")]
    pub allow_insecure_urls: bool,
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

    /// Extra librdkafka properties for every Kafka client (data and telemetry producers, control consumer, admin, verify), key=value[,key=value], e.g. linger.ms=50,compression.type=gzip; properties the exactly-once guarantees rest on (idempotence, acks, partitioner, in-flight, timeouts, retries, transactions, bootstrap servers, security protocol, sasl.*, certificate checks) need KAFKA_ALLOW_UNSAFE_CONFIG
    #[arg(
        long,
        env = "KAFKA_PRODUCER_CONFIG",
        hide_env_values = true,
        value_name = "PROPS"
    )]
    pub kafka_producer_config: Option<String>,

    /// Extra librdkafka properties for the consumers only (control listener, verify), applied after KAFKA_PRODUCER_CONFIG; the same properties are guarded (KAFKA_ALLOW_UNSAFE_CONFIG)
    #[arg(
        long,
        env = "KAFKA_CONSUMER_CONFIG",
        hide_env_values = true,
        value_name = "PROPS"
    )]
    pub kafka_consumer_config: Option<String>,

    /// Allow KAFKA_PRODUCER_CONFIG and KAFKA_CONSUMER_CONFIG to override the properties the exactly-once guarantees rest on (a warning names them); the guarantees are then yours to keep
    #[arg(long, env = "KAFKA_ALLOW_UNSAFE_CONFIG", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", value_name = "BOOL")]
    pub kafka_allow_unsafe_config: bool,

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
    /// lost record; what it cannot answer (unreachable, a REST horizon) is reported as unchecked
    /// and fails the verdict
    #[arg(
        long,
        env = "BINANCE_API_URL",
        default_value = "https://api.binance.com",
        value_name = "URL"
    )]
    pub binance_api_url: String,
    /// Exchange the topic's records come from (binance, bybit, okx); without it each record's
    /// exchange is read from it (records without one are Binance's)
    #[arg(long, env = "EXCHANGE", value_name = "EXCHANGE")]
    pub exchange: Option<String>,
    /// Market the topic's records come from (Binance: spot, usdm, coinm; Bybit: spot, linear,
    /// inverse; OKX: spot, swap, futures); without it each record's market is read from it
    #[arg(long, env = "MARKET", value_name = "MARKET")]
    pub market: Option<String>,
    /// Bybit REST base URL, for gaps in Bybit's records
    #[arg(
        long,
        env = "BYBIT_API_URL",
        default_value = bybit_url(|s| s.rest_url(crate::market::Market::Spot)),
        value_name = "URL"
    )]
    pub bybit_api_url: String,
    /// OKX REST base URL, for gaps in OKX's records
    #[arg(
        long,
        env = "OKX_API_URL",
        default_value = okx_url(|s| s.rest_url(crate::market::Market::Spot)),
        value_name = "URL"
    )]
    pub okx_api_url: String,
    /// Base URL of Bybit's archive of trades, the list Bybit's trades are checked against
    #[arg(
        long,
        env = "BYBIT_ARCHIVE_URL",
        default_value = bybit_url(|s| s.archive_url().expect("Bybit has an archive")),
        value_name = "URL"
    )]
    pub bybit_archive_url: String,
    /// Base URL of OKX's archive of trades, the list OKX's trades older than three months are
    /// checked against
    #[arg(
        long,
        env = "OKX_ARCHIVE_URL",
        default_value = okx_url(|s| s.archive_url().expect("OKX has an archive")),
        value_name = "URL"
    )]
    pub okx_archive_url: String,
    /// USDⓈ-M futures REST base URL, for gaps in usdm records
    #[arg(
        long,
        env = "BINANCE_FAPI_URL",
        default_value = "https://fapi.binance.com",
        value_name = "URL"
    )]
    pub binance_fapi_url: String,
    /// COIN-M futures REST base URL, for gaps in coinm records
    #[arg(
        long,
        env = "BINANCE_DAPI_URL",
        default_value = "https://dapi.binance.com",
        value_name = "URL"
    )]
    pub binance_dapi_url: String,
    #[command(flatten)]
    pub access: AccessArgs,
    /// Do not ask Binance about gaps: every inner gap counts as missing, and the edges of
    /// id-ordered types are not checked (a note says so)
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
    /// Symbols to load [default: the venue's BTC and ETH of the market, e.g. BTCUSDT,ETHUSDT;
    /// BTCUSD_PERP,ETHUSD_PERP on coinm; BTC-USDT,ETH-USDT on OKX's spot]
    #[arg(long)]
    pub symbol: Option<String>,
    /// Data type
    #[arg(long = "type", default_value = "api_candles_1m")]
    pub data_type: String,
    /// Days of history before today; the range ends now, so today's part comes over REST and
    /// the whole days from the archive (librdkafka's mock cluster keeps only about 5 MB per
    /// partition, so the demo stays small). A live type (ws_*) streams the next 10 seconds
    /// instead (30 for liquidations; candles until the open one closes)
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Where history comes from: auto, rest or archive (the simulator serves both)
    #[arg(long, default_value = "auto")]
    pub source: String,
    /// Market: spot, usdm or coinm on Binance; spot, linear or inverse on Bybit; spot, swap or
    /// futures on OKX (the simulator serves them all)
    #[arg(long, default_value = "spot")]
    pub market: String,
    /// Exchange: binance, bybit or okx (the simulator serves each)
    #[arg(long, default_value = "binance")]
    pub exchange: String,
}

impl JobArgs {
    /// The value of the URL setting `var` (a venue names its URLs by variable), if this command
    /// has that setting.
    pub(super) fn url_setting(&self, var: &str) -> Option<&str> {
        Some(match var {
            "BINANCE_API_URL" => &self.binance_api_url,
            "BINANCE_FAPI_URL" => &self.binance_fapi_url,
            "BINANCE_DAPI_URL" => &self.binance_dapi_url,
            "ARCHIVE_URL" => &self.archive_url,
            "BINANCE_WS_URL" => &self.binance_ws_url,
            "BINANCE_FWS_URL" => &self.binance_fws_url,
            "BINANCE_DWS_URL" => &self.binance_dws_url,
            "BYBIT_API_URL" => &self.bybit_api_url,
            "BYBIT_ARCHIVE_URL" => &self.bybit_archive_url,
            "BYBIT_WS_URL" => &self.bybit_ws_url,
            "OKX_API_URL" => &self.okx_api_url,
            "OKX_ARCHIVE_URL" => &self.okx_archive_url,
            "OKX_WS_URL" => &self.okx_ws_url,
            _ => return None,
        })
    }
}

impl VerifyArgs {
    /// As [`JobArgs::url_setting`].
    pub(super) fn url_setting(&self, var: &str) -> Option<&str> {
        Some(match var {
            "BINANCE_API_URL" => &self.binance_api_url,
            "BINANCE_FAPI_URL" => &self.binance_fapi_url,
            "BINANCE_DAPI_URL" => &self.binance_dapi_url,
            "BYBIT_API_URL" => &self.bybit_api_url,
            "BYBIT_ARCHIVE_URL" => &self.bybit_archive_url,
            "OKX_API_URL" => &self.okx_api_url,
            "OKX_ARCHIVE_URL" => &self.okx_archive_url,
            _ => return None,
        })
    }
}

/// The default of one of Bybit's URL flags: its spec's public host.
fn bybit_url(url: fn(&dyn crate::venue::VenueSpec) -> crate::venue::UrlVar) -> &'static str {
    url(crate::venues::spec(crate::market::Venue::Bybit)).default
}

/// The default of one of OKX's URL flags: its spec's public host.
fn okx_url(url: fn(&dyn crate::venue::VenueSpec) -> crate::venue::UrlVar) -> &'static str {
    url(crate::venues::spec(crate::market::Venue::Okx)).default
}
