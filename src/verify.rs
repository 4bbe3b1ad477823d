//! `verify`: reads a topic back and proves what it holds, per symbol and data type: record count,
//! first and last timestamp, duplicates (by `_key`), gaps (missing open times for candles, missing
//! aggregate ids for trades) and records outside the range. Any problem is a non-zero exit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::binance::Interval;
use crate::config::KafkaConfig;
use crate::error::{LoaderError, Result};
use crate::kafka::{self, CapturingContext};
use crate::time_range::{fmt_ms, TimeRange};

/// The fields `verify` reads from each record.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow, rename = "_key")]
    key: Option<&'a str>,
    #[serde(borrow)]
    symbol: Option<&'a str>,
    timestamp: Option<i64>,
    #[serde(borrow)]
    interval: Option<&'a str>,
    open_time: Option<i64>,
    trade_id: Option<u64>,
    first_trade_id: Option<u64>,
    first_update_id: Option<u64>,
    final_update_id: Option<u64>,
    last_update_id: Option<u64>,
    update_id: Option<u64>,
}

#[derive(Default)]
struct Group {
    values: Vec<i64>,
    /// Diff depth: (first, final) update ids, to check the sequence.
    spans: Vec<(u64, u64)>,
    first_ts: i64,
    last_ts: i64,
    outside: u64,
    bad_keys: u64,
}

/// The verdict on one (symbol, data type).
#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    pub symbol: String,
    pub data_type: String,
    pub records: u64,
    pub first_timestamp: Option<i64>,
    pub last_timestamp: Option<i64>,
    pub duplicates: u64,
    /// Missing open times (candles) or ids (trades).
    pub missing: u64,
    /// Up to 10 missing ranges, inclusive, as open times or ids.
    pub missing_ranges: Vec<(i64, i64)>,
    pub outside_range: u64,
    pub bad_keys: u64,
}

impl GroupReport {
    pub fn ok(&self) -> bool {
        self.duplicates == 0
            && self.missing == 0
            && self.outside_range == 0
            && self.bad_keys == 0
            && self.records > 0
    }
}

/// The whole topic's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub topic: String,
    pub records: u64,
    pub unreadable: u64,
    /// Messages the broker already deleted (retention) before they could be read.
    pub removed_by_retention: i64,
    pub groups: Vec<GroupReport>,
    pub range: Option<(i64, i64)>,
    pub notes: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.unreadable == 0
            && self.removed_by_retention == 0
            && !self.groups.is_empty()
            && self.groups.iter().all(GroupReport::ok)
    }

    pub fn render(&self) -> String {
        let mut s = format!("topic {}: {} records", self.topic, self.records);
        if let Some((a, b)) = self.range {
            s += &format!(", expected range [{}, {})", fmt_ms(a), fmt_ms(b));
        }
        s.push('\n');
        for g in &self.groups {
            s += &format!(
                "  {:<12} {:<16} records={:<10} first={} last={} duplicates={} missing={} outside_range={}{}  {}\n",
                g.symbol,
                g.data_type,
                g.records,
                g.first_timestamp.map(fmt_ms).unwrap_or_else(|| "-".into()),
                g.last_timestamp.map(fmt_ms).unwrap_or_else(|| "-".into()),
                g.duplicates,
                g.missing,
                g.outside_range,
                if g.bad_keys > 0 { format!(" bad_keys={}", g.bad_keys) } else { String::new() },
                if g.ok() { "OK" } else { "PROBLEM" }
            );
            for (a, b) in &g.missing_ranges {
                if g.data_type.starts_with("candles_") {
                    s += &format!("      missing candles {} .. {}\n", fmt_ms(*a), fmt_ms(*b));
                } else {
                    s += &format!("      missing ids {a} .. {b}\n");
                }
            }
        }
        if self.unreadable > 0 {
            s += &format!("  {} messages are not loader records (not JSON objects with _key, symbol, timestamp)\n", self.unreadable);
        }
        if self.removed_by_retention > 0 {
            s += &format!(
                "  {} messages were already deleted by the broker (retention) and could not be checked\n",
                self.removed_by_retention
            );
        }
        for n in &self.notes {
            s += &format!("  note: {n}\n");
        }
        s += if self.ok() {
            "verdict: OK\n"
        } else {
            "verdict: PROBLEMS FOUND\n"
        };
        s
    }
}

/// Reads every message of `topic` up to its current end. Blocking.
pub fn verify_topic(
    k: &KafkaConfig,
    topic: &str,
    range: Option<TimeRange>,
) -> Result<VerifyReport> {
    let mut cfg = kafka::base_config(k);
    cfg.set("group.id", "loader-producer-verify")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760");
    let consumer: BaseConsumer<CapturingContext> = cfg
        .create_with_context(CapturingContext::default())
        .map_err(|e| LoaderError::config(format!("invalid Kafka settings: {e}")))?;
    kafka::wait_for_cluster(consumer.client(), &consumer.context().errors, k, &|| {
        let _ = consumer.poll(Duration::ZERO);
    })?;
    let md = consumer
        .fetch_metadata(Some(topic), k.connect_timeout)
        .map_err(|e| {
            LoaderError::kafka(format!("cannot read the metadata of topic {topic}: {e}"))
        })?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(LoaderError::Verify(format!("topic {topic} does not exist")));
    }
    let mut tpl = TopicPartitionList::new();
    let mut remaining = BTreeMap::new();
    let mut removed_by_retention = 0i64;
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, k.connect_timeout)
            .map_err(|e| {
                LoaderError::kafka(format!("cannot read the offsets of {topic}/{p}: {e}"))
            })?;
        removed_by_retention += low;
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low))
                .map_err(|e| LoaderError::kafka(e.to_string()))?;
            remaining.insert(p, high);
        }
    }
    consumer
        .assign(&tpl)
        .map_err(|e| LoaderError::kafka(format!("cannot read topic {topic}: {e}")))?;

    let now = chrono::Utc::now().timestamp_millis();
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    let mut records = 0u64;
    let mut unreadable = 0u64;
    let mut key_buf = String::new();
    let mut last_progress = Instant::now();
    while !remaining.is_empty() {
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            if last_progress.elapsed() > Duration::from_secs(30) {
                return Err(LoaderError::kafka(format!(
                    "reading topic {topic} stalled for 30 s with {} partition(s) unfinished",
                    remaining.len()
                )));
            }
            continue;
        };
        let msg = msg.map_err(|e| LoaderError::kafka(format!("reading topic {topic}: {e}")))?;
        last_progress = Instant::now();
        if let Some(high) = remaining.get(&msg.partition()) {
            if msg.offset() + 1 >= *high {
                remaining.remove(&msg.partition());
            }
        }
        records += 1;
        let Some(probe) = msg
            .payload()
            .and_then(|p| serde_json::from_slice::<Probe>(p).ok())
        else {
            unreadable += 1;
            continue;
        };
        let (Some(key), Some(symbol), Some(ts)) = (probe.key, probe.symbol, probe.timestamp) else {
            unreadable += 1;
            continue;
        };
        use std::fmt::Write;
        key_buf.clear();
        let mut span = None;
        let (data_type, value) = if let (Some(iv), Some(open)) = (probe.interval, probe.open_time) {
            let _ = write!(key_buf, "{symbol}_{iv}_{open}");
            (format!("candles_{iv}"), open)
        } else if let (Some(id), Some(_)) = (probe.trade_id, probe.first_trade_id) {
            let _ = write!(key_buf, "{symbol}_agg_{id}");
            ("agg_trades".to_string(), id as i64)
        } else if let Some(id) = probe.trade_id {
            let _ = write!(key_buf, "{symbol}_trade_{id}");
            ("trades".to_string(), id as i64)
        } else if let (Some(first), Some(last)) = (probe.first_update_id, probe.final_update_id) {
            let _ = write!(key_buf, "{symbol}_depth_{last}");
            span = Some((first, last));
            ("depth".to_string(), last as i64)
        } else if let Some(id) = probe.last_update_id {
            let _ = write!(key_buf, "{symbol}_book_{id}");
            ("order_book".to_string(), id as i64)
        } else if let Some(id) = probe.update_id {
            let _ = write!(key_buf, "{symbol}_bookticker_{id}");
            ("book_ticker".to_string(), id as i64)
        } else {
            unreadable += 1;
            continue;
        };
        let g = groups
            .entry((symbol.to_string(), data_type))
            .or_insert_with(|| Group {
                first_ts: i64::MAX,
                last_ts: i64::MIN,
                ..Default::default()
            });
        g.values.push(value);
        if let Some(s) = span {
            g.spans.push(s);
        }
        g.first_ts = g.first_ts.min(ts);
        g.last_ts = g.last_ts.max(ts);
        if key != key_buf {
            g.bad_keys += 1;
        }
        if let Some(r) = range {
            if !r.contains(ts) {
                g.outside += 1;
            }
        }
    }

    let mut notes = Vec::new();
    let mut reports = Vec::new();
    for ((symbol, data_type), mut g) in groups {
        g.values.sort_unstable();
        let total = g.values.len() as u64;
        g.values.dedup();
        let duplicates = total - g.values.len() as u64;
        let (missing, missing_ranges) = match data_type
            .strip_prefix("candles_")
            .map(|iv| iv.parse::<Interval>())
        {
            Some(Ok(iv)) => {
                let (mut from, mut to) = (g.values[0], *g.values.last().unwrap());
                if let Some(r) = range {
                    from = iv.align_up(r.start_ms);
                    let last_closed = iv.align_down(now);
                    if r.end_ms > last_closed {
                        notes.push(format!("{symbol} {data_type}: the range reaches past the present; checked up to the last record"));
                    } else {
                        to = iv.prev_open(iv.align_up(r.end_ms));
                    }
                }
                candle_gaps(iv, &g.values, from, to)
            }
            Some(Err(_)) => (0, Vec::new()),
            None if data_type == "agg_trades" || data_type == "trades" => id_gaps(&g.values),
            None if data_type == "depth" => update_gaps(&mut g.spans),
            // Snapshots and tickers are samples: only duplicates can be wrong.
            None => (0, Vec::new()),
        };
        reports.push(GroupReport {
            symbol,
            data_type,
            records: total,
            first_timestamp: Some(g.first_ts),
            last_timestamp: Some(g.last_ts),
            duplicates,
            missing,
            missing_ranges,
            outside_range: g.outside,
            bad_keys: g.bad_keys,
        });
    }
    Ok(VerifyReport {
        topic: topic.to_string(),
        records,
        unreadable,
        removed_by_retention,
        groups: reports,
        range: range.map(|r| (r.start_ms, r.end_ms)),
        notes,
    })
}

/// Missing open times in `[from, to]` given the sorted unique open times present.
fn candle_gaps(iv: Interval, present: &[i64], from: i64, to: i64) -> (u64, Vec<(i64, i64)>) {
    let mut missing = 0u64;
    let mut ranges = Vec::new();
    let mut expected = from;
    let mut note = |a: i64, b: i64, n: u64, ranges: &mut Vec<(i64, i64)>| {
        missing += n;
        if ranges.len() < 10 {
            ranges.push((a, b));
        }
    };
    for &t in present.iter().filter(|&&t| t >= from && t <= to) {
        if t > expected {
            let (mut n, mut last) = (0u64, expected);
            let mut x = expected;
            while x < t {
                last = x;
                n += 1;
                x = iv.next_open(x);
            }
            note(expected, last, n, &mut ranges);
        }
        expected = iv.next_open(t);
    }
    if expected <= to {
        let (mut n, mut last) = (0u64, expected);
        let mut x = expected;
        while x <= to {
            last = x;
            n += 1;
            x = iv.next_open(x);
        }
        note(expected, last, n, &mut ranges);
    }
    (missing, ranges)
}

/// Update ids no diff-depth event covers, between the first and the last event.
fn update_gaps(spans: &mut [(u64, u64)]) -> (u64, Vec<(i64, i64)>) {
    spans.sort_unstable_by_key(|s| s.1);
    let mut missing = 0u64;
    let mut ranges = Vec::new();
    for w in spans.windows(2) {
        let (prev_last, next_first) = (w[0].1, w[1].0);
        if next_first > prev_last + 1 {
            missing += next_first - prev_last - 1;
            if ranges.len() < 10 {
                ranges.push((prev_last as i64 + 1, next_first as i64 - 1));
            }
        }
    }
    (missing, ranges)
}

/// Missing ids between the smallest and largest present.
fn id_gaps(present: &[i64]) -> (u64, Vec<(i64, i64)>) {
    let mut missing = 0u64;
    let mut ranges = Vec::new();
    for w in present.windows(2) {
        if w[1] > w[0] + 1 {
            missing += (w[1] - w[0] - 1) as u64;
            if ranges.len() < 10 {
                ranges.push((w[0] + 1, w[1] - 1));
            }
        }
    }
    (missing, ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_candle_and_id_gaps() {
        let iv: Interval = "1m".parse().unwrap();
        let present = [0, 60_000, 240_000];
        let (n, r) = candle_gaps(iv, &present, 0, 360_000);
        assert_eq!(n, 4);
        assert_eq!(r, vec![(120_000, 180_000), (300_000, 360_000)]);
        assert_eq!(id_gaps(&[1, 2, 5, 6, 9]), (4, vec![(3, 4), (7, 8)]));
    }
}
