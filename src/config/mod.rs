//! Configuration: every setting is an environment variable (how Kubernetes Jobs are configured)
//! and also a flag. `cli` defines them (and explains a malformed value by its variable),
//! `resolve` validates them into the types here, whose fields are what the rest of the loader
//! reads. Data-type names are the registry's.

mod cli;
mod resolve;

use std::time::Duration;

use crate::archive::ArchiveConfig;
pub use crate::kafka::{KafkaConfig, KafkaSecurity};
pub use crate::market::{Market, Venue};
pub use crate::registry::{DataType, LiveType};
pub use crate::secret::Secret;
pub use crate::sink::MessageKey;
pub use crate::source::live::LiveConfig;
use crate::source_mode::SourceMode;
use crate::time_range::TimeRange;
pub use crate::venue::VenueSettings;
pub use cli::{parse_cli, Cli, Command, DemoArgs, JobArgs, KafkaArgs, SchemaArgs, VerifyArgs};
pub use resolve::{check_topic_name, parse_properties, parse_symbols};

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
    /// The exchange (`EXCHANGE`); `rest` holds its settings.
    pub venue: Venue,
    /// The market (`MARKET`), one of the venue's.
    pub market: Market,
    /// Rows per page of id- and time-paged endpoints, at the venue (`PAGE_LIMIT`, at most 1000).
    pub page_limit: u32,
    /// Candles per klines request at the venue (`PAGE_LIMIT`, else the venue's default).
    pub kline_page_limit: u32,
    /// REST requests in flight (`FETCH_CONCURRENCY`).
    pub fetch_concurrency: usize,
    /// The venue's REST client (and, for live types, its stream base).
    pub rest: VenueSettings,
    pub live: LiveConfig,
    pub kafka: KafkaConfig,
    /// Connection of the control listener (consumer credentials when given).
    pub control_kafka: KafkaConfig,
}
