//! Resume: where an earlier attempt of the same job stopped publishing, so a restarted Job (a
//! killed pod, an exit 1 retried by Kubernetes, a stop followed by a new Job) continues strictly
//! after it: nothing doubled, nothing skipped, records still in order per symbol.
//!
//! With `KAFKA_MESSAGE_KEY=symbol` every record of a symbol lands in one partition, in the order
//! it was published, and the idempotent producer never leaves a hole in that order; so the last
//! record of the symbol in its partition is exactly where to continue. It is found by reading
//! each partition backwards from its end, a chunk at a time, until every symbol expected there
//! has been seen: for a job that owns its topic that is one chunk, however many records the topic
//! holds, never the whole topic.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Deserialize;

use crate::config::KafkaConfig;
use crate::error::{LoaderError, Result};
use crate::kafka::{self, CapturingContext};
use crate::market::Market;
use crate::registry::RecordKind;
use crate::time_range::TimeRange;

/// Messages read per step backwards.
const CHUNK: i64 = 2_000;

/// The last record an earlier attempt published for one symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePoint {
    /// Open time (candles), trade id (trades) or update id (depth, tickers).
    pub ordinal: i64,
    pub timestamp: i64,
}

/// What the topic says about earlier attempts.
#[derive(Debug, Clone, Default)]
pub struct Resume {
    /// Per symbol, the last record of the job's kind and range.
    pub points: BTreeMap<String, ResumePoint>,
    /// Messages in the topic when the job started (all partitions).
    pub records_in_topic: u64,
    /// Messages read to find the points.
    pub messages_read: u64,
    pub elapsed: Duration,
}

impl Resume {
    pub fn is_resumed(&self) -> bool {
        !self.points.is_empty()
    }
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow, rename = "_key")]
    key: &'a str,
    #[serde(borrow)]
    symbol: &'a str,
    timestamp: i64,
}

/// The partition librdkafka's default partitioner (`consistent_random`: CRC-32 of the key)
/// sends a symbol's records to.
pub fn partition_of(symbol: &str, partitions: usize) -> usize {
    (crc32fast::hash(symbol.as_bytes()) as usize) % partitions.max(1)
}

/// Finds, for each of `symbols`, the last record of `market` and `kind` within `range` (if any)
/// that `topic` holds. Blocking.
pub fn find(
    k: &KafkaConfig,
    topic: &str,
    symbols: &[String],
    market: Market,
    kind: RecordKind,
    range: Option<TimeRange>,
) -> Result<Resume> {
    let started = Instant::now();
    let mut cfg = kafka::base_config(k);
    cfg.set("group.id", "loader-producer-resume")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("client.id", "loader-producer-resume");
    kafka::apply_consumer_overrides(&mut cfg, k);
    let consumer: BaseConsumer<CapturingContext> = cfg
        .create_with_context(CapturingContext::default())
        .map_err(|e| LoaderError::config(format!("invalid Kafka settings: {e}")))?;
    let timeout = k.connect_timeout.max(Duration::from_secs(5));
    let md = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| {
        LoaderError::kafka(format!(
            "cannot read the metadata of topic {topic} to resume: {e}"
        ))
    })?;
    let mut out = Resume::default();
    let Some(t) = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
    else {
        return Ok(out); // no topic, nothing published yet
    };
    let partitions: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    let wanted: HashSet<&str> = symbols.iter().map(String::as_str).collect();
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout).map_err(|e| {
            LoaderError::kafka(format!("cannot read the offsets of {topic}/{p}: {e}"))
        })?;
        out.records_in_topic += (high - low).max(0) as u64;
        let mut expected: HashSet<&str> = symbols
            .iter()
            .filter(|s| partitions.len() == 1 || partition_of(s, partitions.len()) == p as usize)
            .map(String::as_str)
            .filter(|s| !out.points.contains_key(*s))
            .collect();
        let mut end = high;
        while end > low && !expected.is_empty() {
            let start = (end - CHUNK).max(low);
            let found = read_window(
                &consumer,
                topic,
                p,
                start,
                end,
                timeout,
                &mut out.messages_read,
                |f| {
                    if !wanted.contains(f.symbol) || !range.is_none_or(|r| r.contains(f.timestamp))
                    {
                        return None;
                    }
                    // Another market's records of the symbol have other keys.
                    match RecordKind::from_market_key(market, f.symbol, f.key) {
                        Some((k, ordinal)) if k == kind => Some(ordinal),
                        _ => None,
                    }
                },
            )?;
            for (symbol, point) in found {
                expected.remove(symbol.as_str());
                out.points.entry(symbol).or_insert(point);
            }
            end = start;
        }
    }
    out.elapsed = started.elapsed();
    Ok(out)
}

/// Reads offsets `[start, end)` of one partition; returns per symbol the last record that
/// `accept` gives an ordinal for.
#[allow(clippy::too_many_arguments)]
fn read_window(
    consumer: &BaseConsumer<CapturingContext>,
    topic: &str,
    partition: i32,
    start: i64,
    end: i64,
    timeout: Duration,
    read: &mut u64,
    accept: impl Fn(&Fields<'_>) -> Option<i64>,
) -> Result<BTreeMap<String, ResumePoint>> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(start))
        .map_err(|e| LoaderError::kafka(e.to_string()))?;
    consumer
        .assign(&tpl)
        .map_err(|e| LoaderError::kafka(format!("cannot read {topic}/{partition}: {e}")))?;
    let mut found: BTreeMap<String, ResumePoint> = BTreeMap::new();
    let mut last_progress = Instant::now();
    loop {
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            if last_progress.elapsed() > timeout {
                return Err(LoaderError::kafka(format!(
                    "reading {topic}/{partition} to resume stalled for {timeout:?}"
                )));
            }
            continue;
        };
        let msg = match msg {
            Ok(m) => m,
            Err(rdkafka::error::KafkaError::PartitionEOF(_)) => break,
            Err(e) => {
                return Err(LoaderError::kafka(format!(
                    "reading {topic}/{partition} to resume: {e}"
                )))
            }
        };
        last_progress = Instant::now();
        if msg.offset() >= end {
            break;
        }
        *read += 1;
        if let Some(f) = msg
            .payload()
            .and_then(|p| serde_json::from_slice::<Fields>(p).ok())
        {
            if let Some(ordinal) = accept(&f) {
                // In order within the partition: a later message is a later record.
                found.insert(
                    f.symbol.to_string(),
                    ResumePoint {
                        ordinal,
                        timestamp: f.timestamp,
                    },
                );
            }
        }
        if msg.offset() + 1 >= end {
            break;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_follow_librdkafkas_crc32() {
        assert_eq!(partition_of("BTCUSDT", 1), 0);
        let n = 7;
        let p = partition_of("BTCUSDT", n);
        assert!(p < n);
        assert_eq!(p, (crc32fast::hash(b"BTCUSDT") as usize) % n);
    }
}
