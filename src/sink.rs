//! `KafkaSink`: publishes record batches to the data topic through one idempotent librdkafka
//! producer, never waiting for one acknowledgement before the next send.
//!
//! librdkafka's queue is the in-flight window; when it is full the sink waits for deliveries to
//! drain it (backpressure reaches the sources through the bounded batch channel). Acknowledgements
//! and failures are counted in the delivery callback: a single failed delivery fails the job, and
//! `records_written` only ever counts what the broker acknowledged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use crate::config::{KafkaConfig, MessageKey};
use crate::error::{LoaderError, Result};
use crate::kafka::{self, ErrorCapture};
use crate::record::RecordBatch;

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

/// The data producer's settings: idempotent (`acks=all`), lz4, batching for throughput, a
/// bounded in-flight queue; KAFKA_PRODUCER_CONFIG last. Public so the benchmark's ceiling
/// producer uses exactly the same.
pub fn producer_config(k: &KafkaConfig) -> rdkafka::ClientConfig {
    let mut cfg = kafka::base_config(k);
    cfg.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("batch.num.messages", "10000")
        // The in-flight window: about 0.1 s of records at full speed, and the bound that keeps
        // memory flat (with the batch channel) however long the range.
        .set("queue.buffering.max.messages", "50000")
        .set("queue.buffering.max.kbytes", "16384")
        .set("message.timeout.ms", "120000");
    kafka::apply_overrides(&mut cfg, k);
    cfg
}

/// The data-topic publisher.
pub struct KafkaSink {
    producer: BaseProducer<DeliveryContext>,
    topic: String,
    key: MessageKey,
    /// Records handed to librdkafka (for the message when some are never acknowledged).
    queued: u64,
}

impl KafkaSink {
    /// Connects (failing fast on bad credentials or certificates) and makes sure the topic exists.
    /// Blocking.
    pub fn connect(k: &KafkaConfig, topic: &str, key: MessageKey) -> Result<KafkaSink> {
        let base = kafka::base_config(k);
        let cfg = producer_config(k);
        let producer: BaseProducer<DeliveryContext> = cfg
            .create_with_context(DeliveryContext::default())
            .map_err(|e| {
                LoaderError::config(format!(
                    "invalid Kafka producer settings (check KAFKA_PRODUCER_CONFIG): {e}"
                ))
            })?;
        kafka::wait_for_cluster(producer.client(), &producer.context().errors, k, &|| {
            producer.poll(Duration::ZERO);
        })?;
        kafka::ensure_topic(
            producer.client(),
            &base,
            topic,
            k.topic_partitions,
            k.connect_timeout.max(Duration::from_secs(10)),
        )?;
        Ok(KafkaSink {
            producer,
            topic: topic.to_string(),
            key,
            queued: 0,
        })
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

    /// Hands every record of `batch` to librdkafka, waiting while its queue is full. Blocking.
    pub fn publish(&mut self, batch: &RecordBatch) -> Result<()> {
        for (payload, record_key) in batch.iter() {
            let key: Option<&[u8]> = match self.key {
                MessageKey::Symbol => Some(batch.symbol.as_bytes()),
                MessageKey::Record => Some(record_key),
                MessageKey::None => None,
            };
            let mut record = BaseRecord::to(&self.topic).payload(payload);
            if let Some(key) = key {
                record = record.key(key);
            }
            let mut waited = Duration::ZERO;
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        if let Some(f) = self.failure() {
                            return Err(LoaderError::kafka(f));
                        }
                        // Serving delivery reports is what drains the queue.
                        self.producer.poll(Duration::from_millis(5));
                        waited += Duration::from_millis(5);
                        if waited > Duration::from_secs(300) {
                            return Err(LoaderError::kafka(format!(
                                "Kafka has accepted nothing for 5 minutes (topic {}): {}",
                                self.topic,
                                self.producer
                                    .context()
                                    .errors
                                    .last()
                                    .map(|(_, r)| r)
                                    .unwrap_or_default()
                            )));
                        }
                    }
                    Err((e, _)) => {
                        return Err(LoaderError::kafka(format!(
                            "cannot queue a record for topic {}: {e}",
                            self.topic
                        )))
                    }
                }
            }
            self.queued += 1;
        }
        self.producer.poll(Duration::ZERO);
        if let Some(f) = self.failure() {
            return Err(LoaderError::kafka(f));
        }
        Ok(())
    }

    /// Serves delivery reports for up to `wait` (call while idle so counts stay current).
    pub fn poll(&self, wait: Duration) {
        self.producer.poll(wait);
    }

    /// Waits until every queued record is acknowledged (or fails). Blocking.
    pub fn flush(&self, timeout: Duration) -> Result<u64> {
        let started = Instant::now();
        let res = self.producer.flush(timeout);
        if let Some(f) = self.failure() {
            return Err(LoaderError::kafka(f));
        }
        if let Err(e) = res {
            return Err(LoaderError::kafka(format!(
                "{} of {} records were not acknowledged by Kafka within {:?}: {e}",
                self.queued - self.acked(),
                self.queued,
                started.elapsed()
            )));
        }
        Ok(self.acked())
    }
}
