//! `ControlListener`: reads `stop` and `ping` commands for this job from the queue-control topic.
//!
//! Each instance reads every partition itself from the end offsets it saw at start, with no
//! consumer group, so several jobs of one queue all see a `stop` (the platform's old listener
//! shared a group, so only one of them did). A topic that does not exist yet is read from its
//! very start once it appears: every message in it was sent after this job started (the first
//! `stop` may be what creates it). Malformed messages are logged and ignored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::kafka::KafkaConfig;
use crate::kafka::{self, CapturingContext};

#[derive(Debug, Clone, PartialEq)]
pub enum ControlCommand {
    Stop,
    /// `timestamp` is the ping's own, echoed in the pong.
    Ping {
        timestamp: Option<Value>,
    },
}

/// Interprets one control message for `queue_id`: `Ok(None)` for another queue's command.
pub fn parse_command(payload: &[u8], queue_id: &str) -> Result<Option<ControlCommand>, String> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let command = obj
        .get("command")
        .and_then(Value::as_str)
        .ok_or("no \"command\" string")?;
    let target = obj
        .get("queue_id")
        .and_then(Value::as_str)
        .ok_or("no \"queue_id\" string")?;
    if target != queue_id && target != "all" {
        return Ok(None);
    }
    match command.trim().to_ascii_lowercase().as_str() {
        "stop" => Ok(Some(ControlCommand::Stop)),
        "ping" => Ok(Some(ControlCommand::Ping {
            timestamp: obj.get("timestamp").cloned(),
        })),
        other => Err(format!("unknown command {other:?}")),
    }
}

pub struct ControlListener {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlListener {
    /// Starts listening; returns once every command sent from now on will be seen: the listener
    /// is positioned at the topic's end, or the topic does not exist (it will be read from its
    /// start when it appears). Gives up waiting after `ready_timeout` (the broker is not
    /// answering), with a warning.
    pub fn start(
        k: &KafkaConfig,
        topic: &str,
        queue_id: &str,
        tx: mpsc::Sender<ControlCommand>,
        ready_timeout: Duration,
    ) -> ControlListener {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let name = topic.to_string();
        let (k, topic, queue_id, flag) = (
            k.clone(),
            topic.to_string(),
            queue_id.to_string(),
            stop.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("control-listener".into())
            .spawn(move || listen(&k, &topic, &queue_id, tx, flag, ready_tx))
            .ok();
        if thread.is_none() {
            tracing::error!(
                "cannot start the control listener thread; stop commands will not be seen"
            );
        }
        if ready_rx.recv_timeout(ready_timeout).is_err() && thread.is_some() {
            tracing::warn!(topic = %name, "the control topic could not be positioned in time; a stop sent now may be missed");
        }
        ControlListener { stop, thread }
    }
}

impl Drop for ControlListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn listen(
    k: &KafkaConfig,
    topic: &str,
    queue_id: &str,
    tx: mpsc::Sender<ControlCommand>,
    stop: Arc<AtomicBool>,
    ready: std::sync::mpsc::Sender<()>,
) {
    let mut cfg = kafka::base_config(k);
    cfg.set(
        "group.id",
        format!("loader-producer-control-{queue_id}-{}", std::process::id()),
    )
    .set("enable.auto.commit", "false")
    .set("enable.partition.eof", "false")
    .set("client.id", "loader-producer-control");
    kafka::apply_consumer_overrides(&mut cfg, k);
    let consumer: BaseConsumer<CapturingContext> = match cfg
        .create_with_context(CapturingContext::default())
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot create the control consumer; stop commands will not be seen");
            return;
        }
    };
    // Position at the current end of every partition; a topic that does not exist yet is read
    // from its start when it appears.
    let mut from_start = false;
    let mut warned = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match assign(&consumer, topic, from_start) {
            Ok(()) => break,
            Err(Unreadable::Missing) => {
                if !from_start {
                    from_start = true;
                    tracing::info!(topic, "control topic does not exist yet: it will be read from its start when it appears");
                    let _ = ready.send(());
                }
            }
            Err(Unreadable::Other(e)) => {
                if !warned {
                    tracing::warn!(topic, error = %e, "control topic not readable yet; retrying in the background");
                    warned = true;
                }
            }
        }
        let until = Instant::now() + Duration::from_millis(if from_start { 500 } else { 1000 });
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    tracing::debug!(topic, "listening for control commands");
    let _ = ready.send(());
    while !stop.load(Ordering::Relaxed) {
        let Some(msg) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "control topic read error");
                continue;
            }
        };
        match parse_command(msg.payload().unwrap_or_default(), queue_id) {
            Ok(Some(cmd)) => {
                tracing::info!(command = ?cmd, "control command received");
                if tx.blocking_send(cmd).is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(why) => tracing::warn!(
                topic,
                offset = msg.offset(),
                "ignoring a malformed control message: {why}"
            ),
        }
    }
}

/// Why the control topic cannot be assigned yet.
enum Unreadable {
    /// The broker says the topic does not exist.
    Missing,
    /// Anything else (the broker is not answering, a partition has no leader yet, …).
    Other(String),
}

/// Assigns every partition at its end, or at its start when `from_start`.
fn assign(
    consumer: &BaseConsumer<CapturingContext>,
    topic: &str,
    from_start: bool,
) -> Result<(), Unreadable> {
    let other = |e: &dyn std::fmt::Display| Unreadable::Other(e.to_string());
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .map_err(|e| other(&e))?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Err(Unreadable::Missing);
    };
    match t.error() {
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => {
            return Err(Unreadable::Missing)
        }
        Some(err) => return Err(Unreadable::Other(format!("{err:?}"))),
        None => {}
    }
    if t.partitions().is_empty() {
        return Err(Unreadable::Missing);
    }
    let mut tpl = TopicPartitionList::new();
    for p in t.partitions() {
        let offset = if from_start {
            Offset::Beginning
        } else {
            let (_, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(5))
                .map_err(|e| other(&e))?;
            Offset::Offset(high)
        };
        tpl.add_partition_offset(topic, p.id(), offset)
            .map_err(|e| other(&e))?;
    }
    consumer.assign(&tpl).map_err(|e| other(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_filtered_by_queue() {
        let q = "loader-btc-1";
        assert_eq!(
            parse_command(br#"{"command":"stop","queue_id":"loader-btc-1"}"#, q),
            Ok(Some(ControlCommand::Stop))
        );
        assert_eq!(
            parse_command(br#"{"command":"stop","queue_id":"all"}"#, q),
            Ok(Some(ControlCommand::Stop))
        );
        assert_eq!(
            parse_command(br#"{"command":"stop","queue_id":"other"}"#, q),
            Ok(None)
        );
        assert_eq!(
            parse_command(br#"{"command":"ping","queue_id":"all","timestamp":1.5}"#, q),
            Ok(Some(ControlCommand::Ping {
                timestamp: Some(serde_json::json!(1.5))
            }))
        );
        for bad in [
            &b"not json"[..],
            b"[1]",
            br#"{"queue_id":"all"}"#,
            br#"{"command":"dance","queue_id":"all"}"#,
        ] {
            assert!(parse_command(bad, q).is_err());
        }
    }
}
