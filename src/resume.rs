//! Resume: where an earlier attempt of the same job stopped publishing, so a restarted Job (a
//! killed pod, an exit 1 retried by Kubernetes, a drain, a stop followed by a new Job with the
//! same settings) continues strictly after it: nothing doubled, nothing skipped, records still in
//! order per symbol.
//!
//! Only records of this job count: each carries the job's fingerprint in its `loader_job`
//! field ([`JobId`]), so another job's records of the same symbol and type (an earlier load of
//! another range into the same topic, yesterday's live job) are never taken for this job's
//! progress; a job that finds none of its own loads its range from the start.
//!
//! With `KAFKA_MESSAGE_KEY=symbol` the sink puts every record of a symbol into one partition
//! (chosen from the partition count the job's first attempt saw, which its records carry), in
//! the order it was published, and neither the idempotent nor the transactional producer leaves a
//! hole in that order; so the last record of the symbol in its partition is exactly where to
//! continue. The tail of every partition is read first (that is where a job that owns its topic
//! finds itself, and where the partition count its records were spread by shows); then each
//! symbol still missing is looked for backwards, a chunk at a time, in its own partition. The
//! newest record of a symbol over every partition read wins. Reads are `read_committed`: what an
//! aborted or fenced transaction wrote is not progress.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Deserialize;

use crate::error::{LoaderError, Result};
use crate::identity::JobId;
use crate::kafka::KafkaConfig;
use crate::kafka::{self, CapturingContext};
use crate::market::{Market, Venue};
use crate::registry::RecordKind;
use crate::time_range::TimeRange;
pub use crate::venue::history::ResumePoint;

/// Messages read per step backwards.
const CHUNK: i64 = 2_000;

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
    /// The partition count an earlier attempt of this job spread its records by, when one was
    /// found: the job keeps it.
    pub partitions: Option<i32>,
    /// Per symbol, records of its type in the range that other jobs published (among those
    /// read): not continued.
    pub foreign: BTreeMap<String, u64>,
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
    /// Which job wrote the record (records of loaders before it have none).
    #[serde(borrow, default, rename = "loader_job")]
    job: Option<&'a str>,
}

/// The partition librdkafka's default partitioner (`consistent_random`: CRC-32 of the key)
/// sends a symbol's records to.
pub fn partition_of(symbol: &str, partitions: usize) -> usize {
    (crc32fast::hash(symbol.as_bytes()) as usize) % partitions.max(1)
}

/// What a search needs to know about the job.
#[derive(Debug, Clone)]
pub struct Search<'a> {
    pub topic: &'a str,
    pub symbols: &'a [String],
    pub venue: Venue,
    pub market: Market,
    pub kind: RecordKind,
    pub range: Option<TimeRange>,
    pub job: &'a JobId,
}

/// What one message is, to a search.
enum Seen {
    /// This job's record of `symbol` (with the partition count its tag names).
    Own(String, ResumePoint, Option<i32>),
    /// Another job's record of a wanted symbol, kind and range.
    Foreign(String),
    Other,
}

impl Search<'_> {
    fn classify(&self, payload: Option<&[u8]>) -> Seen {
        let Some(f) = payload.and_then(|p| serde_json::from_slice::<Fields>(p).ok()) else {
            return Seen::Other;
        };
        if !self.symbols.iter().any(|s| s == f.symbol)
            || !self.range.is_none_or(|r| r.contains(f.timestamp))
        {
            return Seen::Other;
        }
        // Another venue's or market's records of the symbol have other keys.
        let ordinal = match RecordKind::from_market_key(self.venue, self.market, f.symbol, f.key) {
            Some((k, ordinal)) if k == self.kind => ordinal,
            _ => return Seen::Other,
        };
        match f.job.and_then(|h| self.job.matches(h)) {
            Some(partitions) => Seen::Own(
                f.symbol.to_string(),
                ResumePoint {
                    ordinal,
                    timestamp: f.timestamp,
                },
                partitions,
            ),
            None => Seen::Foreign(f.symbol.to_string()),
        }
    }
}

/// The consumer that reads what an earlier attempt of the job published. It connects while the
/// data producer does ([`TailReader::connect`]) and reads only after ([`TailReader::find`]), so
/// the read is final (the producer has fenced or outwaited any other instance by then) and the
/// job's start does not wait for a second connection.
pub struct TailReader {
    consumer: BaseConsumer<CapturingContext>,
    timeout: Duration,
}

impl TailReader {
    /// Creates the consumer and opens its connection to the cluster. Blocking. A cluster that
    /// does not answer is not an error here: [`find`](Self::find) says so.
    pub fn connect(k: &KafkaConfig) -> Result<TailReader> {
        let mut cfg = kafka::base_config(k);
        cfg.set("group.id", "loader-producer-resume")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .set("client.id", "loader-producer-resume");
        kafka::apply_consumer_overrides(&mut cfg, k);
        let consumer: BaseConsumer<CapturingContext> = cfg
            .create_with_context(CapturingContext::default())
            .map_err(|e| LoaderError::config(format!("invalid Kafka settings: {e}")))?;
        let timeout = k.connect_timeout.max(Duration::from_secs(5));
        // Any broker's answer will do: it only opens the connection.
        let _ = consumer.fetch_metadata(None, k.connect_timeout);
        Ok(TailReader { consumer, timeout })
    }

    /// Finds, for each symbol of `search`, the last record this job published (if any) in
    /// `search.topic`. Blocking.
    pub fn find(self, search: &Search<'_>) -> Result<Resume> {
        let found = search_tails(&self.consumer, self.timeout, search);
        // Closing a consumer takes about 100 ms, and nothing waits for it.
        std::thread::spawn(move || drop(self));
        found
    }
}

fn search_tails(
    consumer: &BaseConsumer<CapturingContext>,
    timeout: Duration,
    search: &Search<'_>,
) -> Result<Resume> {
    let started = Instant::now();
    let topic = search.topic;
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
    let mut tails: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout).map_err(|e| {
            LoaderError::kafka(format!("cannot read the offsets of {topic}/{p}: {e}"))
        })?;
        out.records_in_topic += (high - low).max(0) as u64;
        tails.insert(p, (low, high));
    }
    let note = |out: &mut Resume, payload: Option<&[u8]>| match search.classify(payload) {
        Seen::Own(symbol, point, n) => {
            if let Some(n) = n {
                out.partitions.get_or_insert(n);
            }
            // The newest over every partition read.
            let e = out.points.entry(symbol).or_insert(point);
            if point.ordinal > e.ordinal {
                *e = point;
            }
        }
        Seen::Foreign(symbol) => *out.foreign.entry(symbol).or_default() += 1,
        Seen::Other => {}
    };
    // Every partition's tail: a job that owns its topic finds all of itself here.
    for (&p, (low, end)) in tails.iter_mut() {
        if *end > *low {
            let start = (*end - CHUNK).max(*low);
            out.messages_read += read_window(consumer, topic, p, start, *end, timeout, &mut |m| {
                note(&mut out, m)
            })?;
            *end = start;
        }
    }
    // Each symbol still missing, further back in its own partition.
    let count = out.partitions.unwrap_or(partitions.len() as i32).max(1) as usize;
    for (&p, (low, end)) in tails.iter_mut() {
        let mut missing: HashSet<&str> = search
            .symbols
            .iter()
            .filter(|s| partition_of(s, count) == p as usize && !out.points.contains_key(*s))
            .map(String::as_str)
            .collect();
        while *end > *low && !missing.is_empty() {
            let start = (*end - CHUNK).max(*low);
            out.messages_read += read_window(consumer, topic, p, start, *end, timeout, &mut |m| {
                note(&mut out, m)
            })?;
            missing.retain(|s| !out.points.contains_key(*s));
            *end = start;
        }
    }
    out.elapsed = started.elapsed();
    Ok(out)
}

/// What a search does with a message's payload.
type Visit<'a> = dyn FnMut(Option<&[u8]>) + 'a;

/// Reads offsets `[start, end)` of one partition, handing each message's payload to `visit` in
/// order; returns how many were read.
fn read_window(
    consumer: &BaseConsumer<CapturingContext>,
    topic: &str,
    partition: i32,
    start: i64,
    end: i64,
    timeout: Duration,
    visit: &mut Visit<'_>,
) -> Result<u64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(start))
        .map_err(|e| LoaderError::kafka(e.to_string()))?;
    consumer
        .assign(&tpl)
        .map_err(|e| LoaderError::kafka(format!("cannot read {topic}/{partition}: {e}")))?;
    let mut last_progress = Instant::now();
    let mut read = 0u64;
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
        read += 1;
        // In order within the partition: a later message is a later record.
        visit(msg.payload());
        if msg.offset() + 1 >= end {
            break;
        }
    }
    Ok(read)
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
