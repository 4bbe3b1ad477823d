//! `KafkaSink`: publishes record batches to the data topic through one librdkafka producer,
//! never waiting for one acknowledgement before the next send, and never leaving a hole.
//!
//! librdkafka's queue is the in-flight window; when it is full the sink waits for deliveries to
//! drain it (backpressure reaches the sources through the bounded batch channel). What reaches
//! the topic is always a prefix of what each symbol's cursor produced:
//! - records never time out in librdkafka's queue (`message.timeout.ms=0`), because an idempotent
//!   producer whose queued record times out still writes the records after it (a hole); instead
//!   the sink's own watchdog ends the job when Kafka acknowledges nothing for
//!   `KAFKA_STALL_TIMEOUT`, without sending anything more;
//! - `enable.gapless.guarantee` turns any other failed batch into a fatal error that stops the
//!   producer before a later batch is written;
//! - every wait (a full queue, an idle source, the final flush) checks for failures, and the
//!   first one purges the queue and fails the job.
//!
//! With transactions (`KAFKA_TRANSACTIONS`), the producer's `transactional.id` is the job's, so
//! a second instance of the job fences the first (`init_transactions`), and records become
//! visible to `read_committed` consumers when their transaction commits (about every second).
//! A failed transaction is aborted and the job fails: resume continues after what committed.
//!
//! Without transactions the sink can hold the job's [`JobLease`] instead (`KAFKA_LEASE_TOPIC`): a
//! second instance waits until this one is done, and a sink whose lease is lost publishes
//! nothing more (exit 3).
//!
//! Every record carries the job's identity as its last field ([`JOB_FIELD`], appended here), and
//! with the symbol as message key its partition is chosen by the sink from the job's pinned
//! partition count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig,
};

use crate::error::{LoaderError, Result};
use crate::identity::JobId;
#[cfg(doc)]
use crate::identity::JOB_FIELD;
use crate::kafka::{self, ErrorCapture, KafkaConfig};
use crate::lease::JobLease;
use crate::record::RecordBatch;
use crate::resume::partition_of;

/// Which bytes become the Kafka message key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKey {
    Symbol,
    Record,
    None,
}

/// Delivery accounting shared with librdkafka's callback thread.
#[derive(Default)]
pub struct DeliveryContext {
    pub acked: AtomicU64,
    /// Payload bytes of acknowledged records.
    pub bytes: AtomicU64,
    pub failed: AtomicU64,
    first_failure: Mutex<Option<String>>,
    pub errors: ErrorCapture,
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.errors.record_log(level, message);
        kafka::log_librdkafka(level, fac, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.record(&error, reason);
        tracing::debug!(%error, reason, "kafka producer error");
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(msg) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
                self.bytes
                    .fetch_add(msg.payload_len() as u64, Ordering::Relaxed);
            }
            Err((e, _)) => {
                if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                    *self.first_failure.lock().unwrap() = Some(e.to_string());
                }
            }
        }
    }
}

/// Whether the job's producer is transactional (`KAFKA_TRANSACTIONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionsSetting {
    /// Transactions where the broker supports them, the idempotent producer where it does not.
    Auto,
    /// Transactions or nothing: a broker that refuses them fails the job.
    On,
    /// The idempotent producer only (no fencing of a second instance).
    Off,
}

impl std::str::FromStr for TransactionsSetting {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(TransactionsSetting::Auto),
            "on" | "true" | "yes" | "1" | "transactional" => Ok(TransactionsSetting::On),
            "off" | "false" | "no" | "0" | "idempotent" => Ok(TransactionsSetting::Off),
            other => Err(format!(
                "KAFKA_TRANSACTIONS {other:?} is not valid: expected auto, on or off"
            )),
        }
    }
}

/// How the sink keeps the topic exactly once, as `started` and the log say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// A transactional producer: a second instance of the job fences this one.
    Transactional,
    /// The idempotent producer: no duplicates or holes from retries; a second instance is
    /// fenced only by the job's lease (`KAFKA_LEASE_TOPIC`).
    Idempotent,
}

impl DeliveryMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::Transactional => "transactional",
            DeliveryMode::Idempotent => "idempotent",
        }
    }
}

/// What the sink needs besides the connection.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    pub topic: String,
    pub key: MessageKey,
    pub job: JobId,
    pub transactions: TransactionsSetting,
    /// Longest time Kafka may acknowledge nothing while records wait, before the job gives up.
    pub stall_timeout: Duration,
    /// The one-partition topic whose consumer group holds the job's lease when the producer is
    /// not transactional (`KAFKA_LEASE_TOPIC`); `None`: no lease.
    pub lease_topic: Option<String>,
}

/// A transaction is committed once it is this old (and at the end).
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// The data producer's settings: idempotent (`acks=all`), gapless, no queue timeout, lz4,
/// batching for throughput, a bounded in-flight queue; then KAFKA_PRODUCER_CONFIG (which cannot
/// touch the guaranteed settings unless KAFKA_ALLOW_UNSAFE_CONFIG says so). Public so the
/// benchmark's ceiling producer uses exactly the same.
pub fn producer_config(k: &KafkaConfig) -> rdkafka::ClientConfig {
    let mut cfg = kafka::base_config(k);
    cfg.set("enable.idempotence", "true")
        .set("enable.gapless.guarantee", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("batch.num.messages", "10000")
        // The in-flight window: about 0.1 s of records at full speed, and the bound that keeps
        // memory flat (with the batch channel) however long the range.
        .set("queue.buffering.max.messages", "50000")
        .set("queue.buffering.max.kbytes", "16384")
        // Infinite: a record that timed out in the queue would leave a hole that later records
        // are written after. The sink's stall watchdog bounds the wait instead.
        .set("message.timeout.ms", "0");
    kafka::apply_overrides(&mut cfg, k);
    cfg
}

/// The transactional variant: librdkafka caps `message.timeout.ms` at the transaction timeout,
/// which is the stall timeout (a failed transaction is aborted, never left with a hole).
fn transactional_config(k: &KafkaConfig, job: &JobId, stall: Duration) -> rdkafka::ClientConfig {
    let mut cfg = kafka::base_config(k);
    let txn_ms = stall.as_millis().clamp(10_000, 900_000).to_string();
    cfg.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "50000")
        .set("queue.buffering.max.kbytes", "16384")
        .set("transactional.id", job.transactional_id())
        .set("transaction.timeout.ms", txn_ms);
    kafka::apply_overrides(&mut cfg, k);
    cfg
}

fn create(cfg: &rdkafka::ClientConfig) -> Result<BaseProducer<DeliveryContext>> {
    cfg.create_with_context(DeliveryContext::default())
        .map_err(|e| {
            LoaderError::config(format!(
                "invalid Kafka producer settings (check KAFKA_PRODUCER_CONFIG): {e}"
            ))
        })
}

/// The data-topic publisher.
pub struct KafkaSink {
    producer: BaseProducer<DeliveryContext>,
    topic: String,
    key: MessageKey,
    mode: DeliveryMode,
    job: JobId,
    /// Partitions the job's records are spread over by symbol (pinned across attempts).
    partitions: Option<i32>,
    /// Replaces each record's closing brace: the job's `loader_job` field and the brace.
    suffix: Vec<u8>,
    /// The record being sent, with `suffix` (librdkafka copies it).
    scratch: Vec<u8>,
    /// Records handed to librdkafka (for the message when some are never acknowledged).
    queued: u64,
    stall_timeout: Duration,
    /// Acknowledged count when it last changed, and when.
    progress: (u64, Instant),
    /// When the open transaction began.
    transaction: Option<Instant>,
    /// When the job must stop waiting for Kafka, once it is known (a signal's grace period).
    deadline: Option<Deadline>,
    /// The job's lease (idempotent mode): released by [`release_lease`](Self::release_lease)
    /// once the final flush is done, or, on any other end, when the sink is dropped (last, so
    /// after the producer is gone).
    lease: Option<JobLease>,
}

/// Tells the sink when it must give up waiting (after a signal); `None` until then.
pub type Deadline = Box<dyn Fn() -> Option<Instant> + Send>;

impl KafkaSink {
    /// Connects (failing fast on bad credentials or certificates), makes sure the topic exists
    /// and fences any other instance of the job: with transactions on the broker, otherwise by
    /// waiting for the job's lease (until `cancelled`). Blocking.
    pub fn connect(
        k: &KafkaConfig,
        opts: &SinkOptions,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<KafkaSink> {
        let base = kafka::base_config(k);
        let wants_txn = opts.transactions != TransactionsSetting::Off;
        let (producer, mode) = if wants_txn {
            let producer = create(&transactional_config(k, &opts.job, opts.stall_timeout))?;
            wait_for(&producer, k)?;
            let timeout = k.connect_timeout.max(Duration::from_secs(10));
            match producer.init_transactions(timeout) {
                Ok(()) => (producer, DeliveryMode::Transactional),
                Err(e) if opts.transactions == TransactionsSetting::Auto => {
                    tracing::warn!(error = %e, "the Kafka cluster refused transactions: publishing with the idempotent producer (a second instance of this job is fenced only by a lease, KAFKA_LEASE_TOPIC; KAFKA_TRANSACTIONS=on makes this an error)");
                    std::thread::spawn(move || drop(producer));
                    let producer = create(&producer_config(k))?;
                    wait_for(&producer, k)?;
                    (producer, DeliveryMode::Idempotent)
                }
                Err(e) => {
                    return Err(LoaderError::kafka(format!(
                        "KAFKA_TRANSACTIONS=on but the Kafka cluster refused transactions: {e}"
                    )))
                }
            }
        } else {
            let producer = create(&producer_config(k))?;
            wait_for(&producer, k)?;
            (producer, DeliveryMode::Idempotent)
        };
        let partitions = kafka::ensure_topic(
            producer.client(),
            &base,
            &opts.topic,
            k.topic_partitions,
            k.connect_timeout.max(Duration::from_secs(10)),
        )?;
        let pinned = (opts.key == MessageKey::Symbol).then_some(partitions);
        let lease = match (mode, &opts.lease_topic) {
            (DeliveryMode::Idempotent, Some(topic)) => {
                Some(JobLease::acquire(k, topic, &opts.job, cancelled)?)
            }
            _ => None,
        };
        tracing::info!(
            mode = mode.as_str(),
            topic = %opts.topic,
            partitions,
            job = opts.job.fingerprint(),
            "connected to Kafka"
        );
        Ok(KafkaSink {
            producer,
            topic: opts.topic.clone(),
            key: opts.key,
            mode,
            suffix: opts.job.record_suffix(pinned),
            scratch: Vec::with_capacity(1024),
            job: opts.job.clone(),
            partitions: pinned,
            queued: 0,
            stall_timeout: opts.stall_timeout,
            progress: (0, Instant::now()),
            transaction: None,
            deadline: None,
            lease,
        })
    }

    /// From now on, every wait of the sink ends at the time `deadline` gives, once it gives one.
    pub fn set_deadline(&mut self, deadline: Deadline) {
        self.deadline = Some(deadline);
    }

    pub fn mode(&self) -> DeliveryMode {
        self.mode
    }

    /// The topic's partition count when the sink connected (symbol keys only).
    pub fn partitions(&self) -> Option<i32> {
        self.partitions
    }

    /// Spreads the job's records over `n` partitions, the count an earlier attempt of the job
    /// used, so each symbol stays in the partition that holds its earlier records.
    pub fn pin_partitions(&mut self, n: i32) {
        if self.key == MessageKey::Symbol {
            self.partitions = Some(n);
            self.suffix = self.job.record_suffix(Some(n));
        }
    }

    /// Records the broker has acknowledged.
    pub fn acked(&self) -> u64 {
        self.producer.context().acked.load(Ordering::Relaxed)
    }

    /// Payload bytes the broker has acknowledged.
    pub fn acked_bytes(&self) -> u64 {
        self.producer.context().bytes.load(Ordering::Relaxed)
    }

    /// A shareable handle on the delivery counters (for progress reporting from other threads).
    pub fn delivery_counters(&self) -> std::sync::Arc<DeliveryContext> {
        self.producer.context().clone()
    }

    /// The first delivery failure, if any record could not be delivered.
    pub fn failure(&self) -> Option<String> {
        if self.producer.context().failed.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let first = self
            .producer
            .context()
            .first_failure
            .lock()
            .unwrap()
            .clone();
        Some(format!(
            "{} record(s) could not be delivered to topic {}: {}",
            self.producer.context().failed.load(Ordering::Relaxed),
            self.topic,
            first.unwrap_or_default()
        ))
    }

    /// Fails (after purging what waits, so nothing later is sent) when a record failed, when
    /// Kafka has acknowledged nothing for the stall timeout while records wait, or when the
    /// job's deadline has passed with records still waiting.
    fn check(&mut self) -> Result<()> {
        if let Some(lease) = self.lease.as_ref().filter(|l| l.lost()) {
            let group = lease.group().to_string();
            self.abandon();
            return Err(LoaderError::Fenced(format!(
                "this job's lease (consumer group {group}) was revoked or lost: another instance of the job may publish to topic {} now, so this one stops without publishing more",
                self.topic
            )));
        }
        if let Some(f) = self.failure() {
            self.abandon();
            return Err(self.classify(f));
        }
        let acked = self.acked();
        if acked != self.progress.0 {
            self.progress = (acked, Instant::now());
        }
        if self.queued <= acked {
            return Ok(());
        }
        let waiting = self.queued - acked;
        if self.progress.1.elapsed() > self.stall_timeout {
            let why = self
                .producer
                .context()
                .errors
                .last()
                .map(|(_, r)| format!(": {r}"))
                .unwrap_or_default();
            self.abandon();
            return Err(LoaderError::kafka(format!(
                "Kafka acknowledged nothing for {:?} (KAFKA_STALL_TIMEOUT) with {waiting} record(s) of topic {} waiting{why}; they were not sent, and the next attempt resumes after what the topic holds",
                self.stall_timeout, self.topic
            )));
        }
        if self
            .deadline
            .as_ref()
            .and_then(|d| d())
            .is_some_and(|d| Instant::now() >= d)
        {
            self.abandon();
            return Err(LoaderError::kafka(format!(
                "{waiting} of {} records were not acknowledged by Kafka before the job had to stop (SHUTDOWN_TIMEOUT); the next attempt resumes after what the topic holds",
                self.queued
            )));
        }
        Ok(())
    }

    /// A fenced producer means another instance of this job took over.
    fn classify(&self, failure: String) -> LoaderError {
        let lower = failure.to_ascii_lowercase();
        if lower.contains("fence") || lower.contains("old epoch") {
            LoaderError::Fenced(format!(
                "another instance of this job (transactional id {}) took over topic {}: this one stops without publishing more ({failure})",
                self.job.transactional_id(),
                self.topic
            ))
        } else {
            LoaderError::kafka(failure)
        }
    }

    /// Sends nothing more: queued records are purged, an open transaction is aborted.
    fn abandon(&mut self) {
        self.producer.purge(PurgeConfig::default().queue());
        if self.transaction.take().is_some() {
            let _ = self.producer.abort_transaction(Duration::from_secs(5));
        }
    }

    fn transaction_error(&mut self, what: &str, e: KafkaError) -> LoaderError {
        let text = format!(
            "cannot {what} a Kafka transaction on topic {}: {e}",
            self.topic
        );
        let err = self.classify(text);
        self.abandon();
        err
    }

    /// Hands every record of `batch` to librdkafka, waiting while its queue is full. Blocking.
    pub fn publish(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.lease.as_ref().is_some_and(|l| l.lost()) {
            return self.check();
        }
        if self.mode == DeliveryMode::Transactional && self.transaction.is_none() {
            if let Err(e) = self.producer.begin_transaction() {
                return Err(self.transaction_error("begin", e));
            }
            self.transaction = Some(Instant::now());
        }
        let partition = match (self.key, self.partitions) {
            (MessageKey::Symbol, Some(n)) => Some(partition_of(&batch.symbol, n as usize) as i32),
            _ => None,
        };
        // Records borrow these while the sink checks itself between sends.
        let topic = self.topic.clone();
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.send_all(batch, &topic, &mut scratch, partition);
        self.scratch = scratch;
        result?;
        self.idle()
    }

    fn send_all(
        &mut self,
        batch: &RecordBatch,
        topic: &str,
        scratch: &mut Vec<u8>,
        partition: Option<i32>,
    ) -> Result<()> {
        for (payload, record_key) in batch.iter() {
            let key: Option<&[u8]> = match self.key {
                MessageKey::Symbol => Some(batch.symbol.as_bytes()),
                MessageKey::Record => Some(record_key),
                MessageKey::None => None,
            };
            // Every record is one JSON object (RecordBatch serialises nothing else).
            debug_assert_eq!(payload.last(), Some(&b'}'));
            scratch.clear();
            scratch.extend_from_slice(&payload[..payload.len() - 1]);
            scratch.extend_from_slice(&self.suffix);
            let mut record = BaseRecord::to(topic).payload(scratch.as_slice());
            if let Some(key) = key {
                record = record.key(key);
            }
            if let Some(p) = partition {
                record = record.partition(p);
            }
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        // Serving delivery reports is what drains the queue.
                        self.producer.poll(Duration::from_millis(5));
                        self.check()?;
                    }
                    Err((e, _)) => {
                        let err = self.classify(format!(
                            "cannot queue a record for topic {}: {e}",
                            self.topic
                        ));
                        self.abandon();
                        return Err(err);
                    }
                }
            }
            self.queued += 1;
        }
        Ok(())
    }

    /// Serves the delivery reports that have arrived, without waiting, and checks them (call
    /// while idle too, so counts stay current and a failure or a stall is found at once);
    /// commits a transaction that is due.
    ///
    /// Never waits inside librdkafka: rdkafka's `poll(d)` loops until `d` has passed and asks
    /// librdkafka for whole milliseconds, so its last millisecond is a busy loop; polled every
    /// 2 ms while idle, that kept half a core busy for as long as a live job ran.
    pub fn idle(&mut self) -> Result<()> {
        self.producer.poll(Duration::ZERO);
        self.check()?;
        if self
            .transaction
            .is_some_and(|t| t.elapsed() >= COMMIT_INTERVAL)
        {
            self.commit()?;
        }
        Ok(())
    }

    /// Waits until every queued record is acknowledged (checking as it waits).
    fn drain(&mut self) -> Result<()> {
        loop {
            if kafka::flush(&self.producer, Duration::from_millis(200)).is_ok() {
                return self.check();
            }
            self.check()?;
        }
    }

    /// Commits the open transaction (after every record in it is acknowledged).
    fn commit(&mut self) -> Result<()> {
        if self.transaction.is_none() {
            return Ok(());
        }
        self.drain()?;
        match self.producer.commit_transaction(self.stall_timeout) {
            Ok(()) => {
                self.transaction = None;
                Ok(())
            }
            Err(e) => Err(self.transaction_error("commit", e)),
        }
    }

    /// Leaves the job's lease group (after [`flush`](Self::flush): nothing more is sent), so a
    /// waiting instance takes over at once. Blocks briefly.
    pub fn release_lease(&mut self) {
        self.lease.take();
    }

    /// Waits until every queued record is acknowledged (and committed), or fails. Blocking.
    pub fn flush(&mut self) -> Result<u64> {
        self.drain()?;
        self.commit()?;
        Ok(self.acked())
    }
}

/// Waits until the cluster answers, failing fast on refused credentials or certificates.
fn wait_for(producer: &BaseProducer<DeliveryContext>, k: &KafkaConfig) -> Result<()> {
    kafka::wait_for_cluster(producer.client(), &producer.context().errors, k, &|| {
        producer.poll(Duration::ZERO);
    })
}
