//! `TelemetryPublisher`: progress events on the queue-events topic, the only way queue-manager
//! learns how a job is doing.
//!
//! Events carry the union of the fields the platform's readers parse (see the README) and never a
//! credential. Telemetry is best effort: it has its own producer with short timeouts, sends never
//! block, and a failing events topic is logged but never slows or fails the data load.

use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};
use serde_json::{json, Map, Value};

use crate::kafka;
use crate::kafka::KafkaConfig;
use crate::status::JobStatus;

/// Who is reporting: the fields that are the same on every event.
#[derive(Debug, Clone)]
pub struct JobIdentity {
    pub queue_id: String,
    pub symbol: String,
    pub data_type: String,
    /// `binance`, `bybit`.
    pub exchange: String,
    /// The market as the exchange names it: `spot`, `usdm`, `coinm`; `linear`, `inverse`.
    pub market: String,
    pub producer: String,
    pub time_range: String,
    pub kafka_topic: String,
}

/// Event statuses queue-manager knows, plus `pong`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    Started,
    Loading,
    Interrupted,
    Error,
    Finished,
    Pong,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Started => "started",
            EventStatus::Loading => "loading",
            EventStatus::Interrupted => "interrupted",
            EventStatus::Error => "error",
            EventStatus::Finished => "finished",
            EventStatus::Pong => "pong",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            EventStatus::Interrupted | EventStatus::Error | EventStatus::Finished
        )
    }
}

#[derive(Default)]
struct TelemetryContext;

impl ClientContext for TelemetryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        kafka::log_librdkafka(level, fac, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "telemetry producer error");
    }
}

impl ProducerContext for TelemetryContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            tracing::warn!(error = %e, "a telemetry event could not be delivered (the load goes on)");
        }
    }
}

pub struct TelemetryPublisher {
    producer: Option<BaseProducer<TelemetryContext>>,
    topic: String,
    identity: JobIdentity,
}

pub fn epoch_seconds() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

impl TelemetryPublisher {
    /// Never fails: without a usable producer, events are only logged.
    pub fn new(k: &KafkaConfig, topic: &str, identity: JobIdentity) -> Self {
        let mut cfg = kafka::base_config(k);
        cfg.set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "15000")
            .set("queue.buffering.max.messages", "10000")
            .set("client.id", "loader-producer-telemetry");
        kafka::apply_overrides(&mut cfg, k);
        let producer = match cfg.create_with_context(TelemetryContext) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "cannot create the telemetry producer; events will only be logged");
                None
            }
        };
        TelemetryPublisher {
            producer,
            topic: topic.to_string(),
            identity,
        }
    }

    /// Builds the event: the union of the fields queue-manager's readers use.
    pub fn event(
        &self,
        status: EventStatus,
        message: &str,
        live: Option<&JobStatus>,
        extra: Map<String, Value>,
    ) -> Value {
        let now = epoch_seconds();
        let id = &self.identity;
        let mut e = json!({
            "queue_id": id.queue_id,
            "symbol": id.symbol,
            "type": id.data_type,
            "exchange": id.exchange,
            "market": id.market,
            "status": status.as_str(),
            "event": status.as_str(),
            "message": message,
            "records_written": live.map(|l| l.records_written()).unwrap_or(0),
            "finished": status.is_terminal(),
            "producer": id.producer,
            "telemetry_id": id.producer,
            "timestamp": now,
            "sent_at": now,
            "time_range": id.time_range,
            "kafka_topic": id.kafka_topic,
            "progress": live.map(|l| l.progress()).unwrap_or(0.0),
            "records_per_second": live.map(|l| (l.records_per_second() * 10.0).round() / 10.0).unwrap_or(0.0),
        });
        let obj = e.as_object_mut().expect("object");
        if let Some((used, budget, window)) = live.and_then(|l| l.weight()) {
            obj.insert(
                "rate_limit_weight".into(),
                json!({"used": used, "budget": budget, "window_seconds": window}),
            );
        }
        if let Some(l) = live {
            use std::sync::atomic::Ordering::Relaxed;
            let (archive, rest, stream) = (
                l.from_archive.load(Relaxed),
                l.from_rest.load(Relaxed),
                l.from_stream.load(Relaxed),
            );
            if archive + rest + stream > 0 {
                // Records handed to the sink so far, by where they came from.
                obj.insert(
                    "records_by_source".into(),
                    json!({"archive": archive, "rest": rest, "websocket": stream}),
                );
            }
            let fallbacks = l.archive_fallbacks.load(Relaxed);
            if fallbacks > 0 {
                obj.insert("archive_fallbacks".into(), json!(fallbacks));
            }
            let holes = l.archive_holes.load(Relaxed);
            if holes > 0 {
                obj.insert("archive_holes".into(), json!(holes));
            }
        }
        if let Some(l) = live {
            // Whether this attempt continues an earlier one: records_written counts this
            // attempt's; records_in_topic what was there already.
            let from = l.resumed_from.get();
            obj.insert("resumed".into(), json!(from.is_some()));
            obj.insert(
                "records_in_topic_at_start".into(),
                json!(l
                    .records_in_topic
                    .load(std::sync::atomic::Ordering::Relaxed)),
            );
            if let Some(from) = from {
                let m: serde_json::Map<String, Value> = from
                    .iter()
                    .map(|(s, t)| (s.clone(), json!(crate::time_range::fmt_ms(*t))))
                    .collect();
                obj.insert("resumed_after".into(), Value::Object(m));
            }
        }
        if let Some(lag) = live.and_then(|l| l.lag_ms()) {
            // Live types: how far behind the exchange the newest published event is.
            obj.insert("lag_ms".into(), json!(lag));
        }
        if status.is_terminal() {
            obj.insert("finished_at".into(), json!(now));
        }
        if status == EventStatus::Error {
            obj.insert("error_message".into(), json!(message));
        }
        obj.extend(extra);
        e
    }

    /// Sends an event without waiting; failures are logged.
    pub fn emit(
        &self,
        status: EventStatus,
        message: &str,
        live: Option<&JobStatus>,
        extra: Map<String, Value>,
    ) {
        let event = self.event(status, message, live, extra);
        tracing::info!(status = status.as_str(), records_written = %event["records_written"], "{message}");
        let Some(p) = &self.producer else { return };
        let payload = event.to_string();
        let record = BaseRecord::to(&self.topic)
            .key(self.identity.queue_id.as_bytes())
            .payload(payload.as_bytes());
        if let Err((e, _)) = p.send(record) {
            tracing::warn!(error = %e, topic = %self.topic, "cannot queue a telemetry event (the load goes on)");
        }
        // Serve earlier events' delivery reports without waiting.
        p.poll(Duration::ZERO);
    }

    /// Waits up to `timeout` for queued events to be delivered (before exit).
    pub fn flush(&self, timeout: Duration) {
        if let Some(p) = &self.producer {
            if let Err(e) = kafka::flush(p, timeout) {
                tracing::warn!(error = %e, topic = %self.topic, "telemetry events not delivered before exit");
            }
        }
    }
}
