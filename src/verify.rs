//! `verify`: reads a topic back and proves what it holds, per symbol and kind of record: record
//! count, first and last timestamp, duplicates (by `_key`), gaps (missing open times for
//! candles, missing ids for trades, uncovered update ids for diff depth) and records outside the
//! range. Any problem is a non-zero exit.
//!
//! The kind of each record comes from its `_key` (`[<market>_]SYMBOL_<tag>_<ordinal>`, see the
//! registry), or is checked against `TYPE` when it is given; groups are per market too, so a
//! topic holding spot and futures records of one symbol is checked as two. A gap is only a lost record if the exchange
//! has records in it: when Binance can be asked (`BINANCE_API_URL`), every gap is looked up and
//! the ones the exchange has too (maintenance, delistings) are reported apart, and so is a range
//! that truly holds no data. Trades (ids) are checked up to the range's edges too: the exchange
//! is asked for the first id at the range's start and for trades after the last record before
//! its end. What the exchange cannot answer (unreachable, an error, older than its REST horizon)
//! is reported as unchecked, which fails the verdict: it is never taken for an exchange gap.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::error::{LoaderError, Result};
use crate::kafka::KafkaConfig;
use crate::kafka::{self, CapturingContext};
use crate::market::{Market, Venue};
use crate::registry::{time_rank, RecordKind, Sequence};
use crate::time_range::{fmt_ms, TimeRange};
use crate::venue::history::{Edge, IdEnds, Probe};
use crate::venue::Session;
use kline_interval::Interval;

/// At most this many gaps are looked up at the exchange; more are counted as missing.
const MAX_LOOKUPS: usize = 200;

/// The fields `verify` reads from each record.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow, rename = "_key")]
    key: Option<&'a str>,
    #[serde(borrow)]
    symbol: Option<&'a str>,
    #[serde(borrow)]
    exchange: Option<&'a str>,
    #[serde(borrow)]
    market: Option<&'a str>,
    timestamp: Option<i64>,
    funding_time: Option<i64>,
    open_time: Option<i64>,
    /// A number (a string id, Bybit's UUIDs, reads as none: those kinds are keyed by time).
    #[serde(default, deserialize_with = "number_or_none")]
    trade_id: Option<u64>,
    first_update_id: Option<u64>,
    final_update_id: Option<u64>,
    previous_final_update_id: Option<u64>,
    last_update_id: Option<u64>,
    update_id: Option<u64>,
}

/// A `u64`, or `None` for any string.
fn number_or_none<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<u64>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a trade id")
        }
        fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_str<E>(self, _: &str) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

impl Fields<'_> {
    /// Whether `_key`'s `ordinal` is the one the record's own fields give for `kind` at
    /// `venue`: for time-ranked kinds, whether it names the record's millisecond.
    fn key_matches(&self, kind: RecordKind, venue: Venue, ordinal: i64) -> bool {
        if kind.time_ranked_at(venue) {
            return self.timestamp == Some(time_rank::time(ordinal));
        }
        self.ordinal(kind) == Some(ordinal)
    }

    /// The ordinal the record's own fields give for `kind` (to check `_key` against).
    fn ordinal(&self, kind: RecordKind) -> Option<i64> {
        match kind {
            RecordKind::Candles(_) | RecordKind::PriceCandles(..) => self.open_time,
            RecordKind::AggTrades | RecordKind::Trades => self.trade_id.map(|v| v as i64),
            RecordKind::DepthUpdates => self.final_update_id.map(|v| v as i64),
            RecordKind::OrderBook => self.last_update_id.map(|v| v as i64),
            RecordKind::BookTicker => self.update_id.map(|v| v as i64),
            RecordKind::FundingRate => self.funding_time,
            RecordKind::FuturesData(..) | RecordKind::MarkPrice | RecordKind::Liquidations => {
                self.timestamp
            }
        }
    }
}

#[derive(Default)]
struct Group {
    /// Ordinals, for every sequence but ids.
    values: Vec<i64>,
    /// Ids with their record's timestamp: a gap's time tells whether the exchange can still be
    /// asked about it.
    timed: Vec<(i64, i64)>,
    /// Diff depth: (first, final, previous final) update ids, to check the sequence (spot by
    /// contiguous ids, futures by the previous final id each event names).
    spans: Vec<(u64, u64, Option<u64>)>,
    first_ts: Option<i64>,
    last_ts: Option<i64>,
    outside: u64,
    bad_keys: u64,
}

/// What `verify` knows before reading: the range, and from `SYMBOL`/`TYPE` the groups expected.
#[derive(Debug, Clone, Default)]
pub struct Expectation {
    pub range: Option<TimeRange>,
    pub symbols: Vec<String>,
    pub kind: Option<RecordKind>,
    /// `EXCHANGE`, when given: records of other venues are of the wrong type.
    pub venue: Option<Venue>,
    /// `MARKET`, when given: records of other markets are of the wrong type.
    pub market: Option<Market>,
    /// Where a symbol of `kind` with no records at all is reported (and looked up): `EXCHANGE`
    /// (else Binance), and `MARKET`, else the first market that offers the type.
    pub home_venue: Venue,
    pub home_market: Market,
    /// The present, from the exchange's clock when it was reached (the loader cut a range
    /// reaching past it by the same clock); the local clock otherwise (`--offline`, no
    /// `SYMBOL`, the exchange unreachable).
    pub now_ms: Option<i64>,
}

/// A span the exchange could not be asked about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UncheckedSpan {
    /// First and last ordinal (id or open time), inclusive, where known: the range's head has
    /// no first, its tail no last, an empty symbol or a listed type neither.
    pub first: Option<i64>,
    pub last: Option<i64>,
    /// When: the time of the record before it, or the range's start.
    pub at: i64,
    pub reason: String,
}

/// The verdict on one (symbol, kind).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroupReport {
    pub exchange: Venue,
    #[serde(skip)]
    pub market: Market,
    /// The market as the venue names it.
    #[serde(rename = "market")]
    pub market_name: &'static str,
    pub symbol: String,
    pub data_type: String,
    pub records: u64,
    pub first_timestamp: Option<i64>,
    pub last_timestamp: Option<i64>,
    pub duplicates: u64,
    /// Missing open times (candles) or ids (trades) the exchange has (or that could not be
    /// looked up): lost records.
    pub missing: u64,
    /// Up to 10 missing ranges, inclusive, as open times or ids.
    pub missing_ranges: Vec<(i64, i64)>,
    /// Missing open times or ids the exchange does not have either: not a loss.
    pub exchange_gaps: u64,
    pub exchange_gap_ranges: Vec<(i64, i64)>,
    /// Spans (gaps, the range's head or tail, an empty symbol) the exchange could not be asked
    /// about: unreachable, an error, or older than its REST serves. A problem: nothing proves
    /// them complete.
    pub unchecked: u64,
    /// Up to 10 of them, each with why.
    pub unchecked_ranges: Vec<UncheckedSpan>,
    pub outside_range: u64,
    pub bad_keys: u64,
    /// Records of the range the venue does not list (kinds checked against its list): a topic
    /// holding them is not the venue's range.
    pub unlisted: u64,
    /// Records of another kind than `TYPE` names.
    pub wrong_type: u64,
    /// No records, and the exchange confirmed it has none in the range.
    pub empty_confirmed: bool,
    #[serde(skip)]
    kind: Option<RecordKind>,
    #[serde(skip)]
    all_missing: Vec<(i64, i64)>,
    /// Ids: the time of the record before each of `all_missing`.
    #[serde(skip)]
    gap_times: Vec<i64>,
    /// Ids: the first and last record present.
    #[serde(skip)]
    ends: Option<IdEnds>,
    /// The ordinals present, kept for kinds checked against the exchange's list.
    #[serde(skip)]
    present: Vec<i64>,
}

impl GroupReport {
    /// Where the group's records come from, for the report: the market, after the venue
    /// unless it is Binance (`spot`, `bybit linear`).
    pub fn place(&self) -> String {
        match self.exchange {
            Venue::Binance => self.market_name.to_string(),
            v => format!("{v} {}", self.market_name),
        }
    }

    fn note_unchecked(&mut self, first: Option<i64>, last: Option<i64>, at: i64, reason: String) {
        self.unchecked += 1;
        if self.unchecked_ranges.len() < 10 {
            self.unchecked_ranges.push(UncheckedSpan {
                first,
                last,
                at,
                reason,
            });
        }
    }

    fn needs_exchange(&self, has_range: bool) -> bool {
        let listed = has_range && self.listed();
        let edges = has_range && self.ends.is_some();
        !self.all_missing.is_empty() || self.records == 0 || listed || edges
    }

    /// How this group's kind is ordered at its venue.
    fn sequence(&self) -> Option<Sequence> {
        self.kind.map(|k| k.sequence_at(self.exchange))
    }

    /// Whether the group is checked against the venue's list of the range.
    fn listed(&self) -> bool {
        matches!(self.sequence(), Some(Sequence::Listed | Sequence::Ranked))
    }

    pub fn ok(&self) -> bool {
        self.duplicates == 0
            && self.missing == 0
            && self.unchecked == 0
            && self.outside_range == 0
            && self.bad_keys == 0
            && self.unlisted == 0
            && self.wrong_type == 0
            && (self.records > 0 || self.empty_confirmed)
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

    /// Whether looking gaps up at the exchange could change the verdict.
    pub fn needs_exchange(&self) -> bool {
        self.groups
            .iter()
            .any(|g| g.needs_exchange(self.range.is_some()))
    }

    pub fn render(&self) -> String {
        let mut s = format!("topic {}: {} records", self.topic, self.records);
        if let Some((a, b)) = self.range {
            s += &format!(", expected range [{}, {})", fmt_ms(a), fmt_ms(b));
        }
        s.push('\n');
        for g in &self.groups {
            s += &format!(
                "  {:<5} {:<12} {:<16} records={:<10} first={} last={} duplicates={} missing={} outside_range={}{}{}{}{}{}  {}\n",
                g.place(),
                g.symbol,
                g.data_type,
                g.records,
                g.first_timestamp.map(fmt_ms).unwrap_or_else(|| "-".into()),
                g.last_timestamp.map(fmt_ms).unwrap_or_else(|| "-".into()),
                g.duplicates,
                g.missing,
                g.outside_range,
                if g.exchange_gaps > 0 { format!(" exchange_gaps={}", g.exchange_gaps) } else { String::new() },
                if g.unchecked > 0 { format!(" unchecked={}", g.unchecked) } else { String::new() },
                if g.bad_keys > 0 { format!(" bad_keys={}", g.bad_keys) } else { String::new() },
                if g.unlisted > 0 { format!(" unlisted={}", g.unlisted) } else { String::new() },
                if g.wrong_type > 0 { format!(" wrong_type={}", g.wrong_type) } else { String::new() },
                if g.ok() { "OK" } else { "PROBLEM" }
            );
            let seq = g.sequence();
            let candles = matches!(seq, Some(Sequence::TimeGrid(_)));
            let listed = seq == Some(Sequence::Listed);
            let ranked = seq == Some(Sequence::Ranked);
            let show = |label: &str, ranges: &[(i64, i64)], s: &mut String| {
                for (a, b) in ranges {
                    if ranked {
                        *s += &format!(
                            "      {label} record at {} (#{} of that millisecond)\n",
                            fmt_ms(time_rank::time(*a)),
                            time_rank::rank(*a) + 1
                        );
                    } else if listed {
                        *s += &format!("      {label} record at {}\n", fmt_ms(*a));
                    } else if candles {
                        *s += &format!("      {label} candles {} .. {}\n", fmt_ms(*a), fmt_ms(*b));
                    } else {
                        *s += &format!("      {label} ids {a} .. {b}\n");
                    }
                }
            };
            show("missing", &g.missing_ranges, &mut s);
            show("the exchange has no", &g.exchange_gap_ranges, &mut s);
            for u in &g.unchecked_ranges {
                let at = fmt_ms(u.at);
                let what = match (u.first, u.last) {
                    (Some(a), Some(b)) if candles => {
                        format!("candles {} .. {}", fmt_ms(a), fmt_ms(b))
                    }
                    (Some(a), Some(b)) => format!("ids {a}..{b} (at {at})"),
                    (None, Some(b)) => format!("ids of the range up to {b} (from {at})"),
                    (Some(a), None) => format!("ids of the range from {a} (after {at})"),
                    (None, None) => format!("the range's records (from {at})"),
                };
                s += &format!("      {}; {what} cannot be checked\n", u.reason);
            }
            if g.records == 0 {
                s += if g.empty_confirmed {
                    "      no records, and the exchange has none in the range\n"
                } else {
                    "      no records\n"
                };
            }
        }
        if self.unreadable > 0 {
            s += &format!(
                "  {} messages are not loader records (not JSON objects with _key, symbol, timestamp)\n",
                self.unreadable
            );
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

    /// The venues and markets whose groups need the exchange asked.
    pub fn markets_to_ask(&self) -> Vec<(Venue, Market)> {
        let mut markets: Vec<(Venue, Market)> = self
            .groups
            .iter()
            .filter(|g| g.needs_exchange(self.range.is_some()))
            .map(|g| (g.exchange, g.market))
            .collect();
        markets.sort();
        markets.dedup();
        markets
    }

    /// Looks every gap, edge and empty group of `market` up at its exchange (`Err`: why it
    /// cannot be asked at all): what it does not have either is an exchange gap, not a lost
    /// record; what it cannot answer is unchecked.
    pub async fn ask_exchange(
        &mut self,
        (venue, market): (Venue, Market),
        exchange: std::result::Result<&Arc<dyn Session>, String>,
    ) {
        let mut lookups = 0usize;
        let range = self.range.map(|(a, b)| TimeRange {
            start_ms: a,
            end_ms: b,
        });
        let now = match exchange {
            Ok(ex) => ex.clock().now_ms(),
            Err(_) => chrono::Utc::now().timestamp_millis(),
        };
        // After a lookup fails, the market's other lookups are not tried: each would wait out the
        // same retries.
        let (exchange, mut failed) = match exchange {
            Ok(ex) => (Some(ex), None),
            Err(why) => (None, Some(why)),
        };
        let mut notes = Vec::new();
        for g in self
            .groups
            .iter_mut()
            .filter(|g| g.exchange == venue && g.market == market)
        {
            let Some(history) = g.kind.and_then(|k| k.history()) else {
                continue;
            };
            // Without a session (`failed` says why) nothing can be asked.
            let source = exchange.and_then(|ex| ex.clone().history(history));
            if source.is_none() && failed.is_none() {
                // This group's type only: the market's other groups can still be asked.
                let at = range.map_or(g.first_timestamp.unwrap_or(0), |r| r.start_ms);
                let why = format!(
                    "{} does not serve {} to this loader",
                    venue.title(),
                    g.data_type
                );
                g.note_unchecked(None, None, at, why);
                continue;
            }
            let beyond = |by_time: bool, t: i64| {
                source
                    .as_ref()?
                    .horizon(market, by_time)
                    .filter(|h| t < h.oldest(now))
                    .map(|h| h.reason(market))
            };
            if g.records == 0 {
                if let Some(r) = range {
                    let answer = match (beyond(true, r.start_ms), failed.clone(), &source) {
                        (Some(why), ..) | (None, Some(why), _) => Err(why),
                        (None, None, Some(source)) => source
                            .exists(&g.symbol, Probe::Time(r))
                            .await
                            .map_err(|e| fail(&mut failed, venue, e)),
                        (None, None, None) => continue,
                    };
                    match answer {
                        Ok(has) => g.empty_confirmed = !has,
                        Err(why) => g.note_unchecked(None, None, r.start_ms, why),
                    }
                }
                continue;
            }
            // No grid: every record the exchange lists in the range must be there. A range
            // older than what the exchange answers cannot be listed: unchecked, not unlisted.
            if let Some(r) = range {
                let listed = match (beyond(true, r.start_ms), failed.clone(), &source) {
                    (Some(why), ..) if g.listed() => Err(why),
                    (_, Some(why), _) => Err(why),
                    (_, None, Some(source)) => source
                        .listed(&g.symbol, r)
                        .await
                        .map_err(|e| fail(&mut failed, venue, e)),
                    (_, None, None) => Ok(None),
                };
                let listed = match listed {
                    Ok(listed) => listed,
                    // Only types without a grid list; a failure says nothing of the others.
                    Err(why) if g.listed() => {
                        g.note_unchecked(None, None, r.start_ms, why);
                        continue;
                    }
                    Err(_) => None,
                };
                if let Some(mut listed) = listed {
                    let lost: Vec<(i64, i64)> = listed
                        .iter()
                        .filter(|t| g.present.binary_search(t).is_err())
                        .map(|&t| (t, t))
                        .collect();
                    g.missing = lost.len() as u64;
                    g.missing_ranges = lost.iter().take(10).copied().collect();
                    listed.sort_unstable();
                    let ranked = g.sequence() == Some(Sequence::Ranked);
                    g.unlisted = g
                        .present
                        .iter()
                        .filter(|&&o| r.contains(if ranked { time_rank::time(o) } else { o }))
                        .filter(|o| listed.binary_search(o).is_err())
                        .count() as u64;
                    continue;
                }
            }
            let mut lost = Vec::new();
            let (mut lost_n, mut gap_n) = (0u64, 0u64);
            g.exchange_gap_ranges.clear();
            let gaps = std::mem::take(&mut g.all_missing);
            for (i, &(a, b)) in gaps.iter().enumerate() {
                let n = count(g.kind, a, b);
                // Ids: the time of the record before the gap; other ordinals are times.
                let at = g.gap_times.get(i).copied().unwrap_or(a);
                let answer = match (beyond(false, at), failed.clone(), &source) {
                    (Some(why), ..) | (None, Some(why), _) => Err(why),
                    (None, None, Some(_)) if lookups >= MAX_LOOKUPS => Ok(true),
                    (None, None, Some(source)) => {
                        lookups += 1;
                        source
                            .exists(&g.symbol, Probe::Ordinals(a, b))
                            .await
                            .map_err(|e| fail(&mut failed, venue, e))
                    }
                    (None, None, None) => Ok(true),
                };
                match answer {
                    Ok(true) => {
                        lost_n += n;
                        lost.push((a, b));
                    }
                    Ok(false) => {
                        gap_n += n;
                        if g.exchange_gap_ranges.len() < 10 {
                            g.exchange_gap_ranges.push((a, b));
                        }
                    }
                    Err(why) => g.note_unchecked(Some(a), Some(b), at, why),
                }
            }
            g.all_missing = gaps;
            // Ids: what the exchange has of the range before the first record and after the last.
            if let (Some(r), Some(ends)) = (range, g.ends) {
                let reaches_past_now = r.end_ms > now;
                if reaches_past_now {
                    notes.push(format!(
                        "{} {} {}: the range reaches past the present; checked up to the last record",
                        g.place(), g.symbol, g.data_type
                    ));
                }
                let answers = match (failed.clone(), &source) {
                    (Some(why), _) => Some((Err(why.clone()), Err(why))),
                    (None, Some(source)) => {
                        source
                            .id_edges(&g.symbol, r, ends)
                            .await
                            .map(|(head, tail)| {
                                let head = head.map_err(|e| fail(&mut failed, venue, e));
                                (head, tail.map_err(|e| fail(&mut failed, venue, e)))
                            })
                    }
                    (None, None) => None,
                };
                if let Some((head, tail)) = answers {
                    let mut edge = |answer: std::result::Result<Edge, String>,
                                    span: (Option<i64>, Option<i64>),
                                    at: i64,
                                    g: &mut GroupReport| {
                        match answer {
                            Ok(Edge::Complete) => {}
                            Ok(Edge::Missing(a, b)) => {
                                lost_n += count(g.kind, a, b);
                                lost.push((a, b));
                            }
                            Ok(Edge::Unchecked(why)) | Err(why) => {
                                g.note_unchecked(span.0, span.1, at, why)
                            }
                        }
                    };
                    edge(head, (None, Some(ends.first.0 - 1)), r.start_ms, g);
                    if !reaches_past_now {
                        edge(tail, (Some(ends.last.0 + 1), None), ends.last.1, g);
                    }
                }
            }
            lost.sort_unstable();
            g.missing = lost_n;
            g.exchange_gaps = gap_n;
            g.missing_ranges = lost.into_iter().take(10).collect();
        }
        self.notes.append(&mut notes);
        if lookups >= MAX_LOOKUPS {
            self.notes.push(format!(
                "more than {MAX_LOOKUPS} gaps: the rest were counted as missing without asking the exchange"
            ));
        }
    }

    /// With `--offline`: the ids of a range before the first record and after the last cannot
    /// be checked without the exchange; said, not failed.
    pub fn note_offline_edges(&mut self) {
        if self.range.is_none() {
            return;
        }
        for g in self.groups.iter().filter(|g| g.ends.is_some()) {
            self.notes.push(format!(
                "{} {} {}: offline, so the ids of the range before the first record and after the last were not checked",
                g.place(), g.symbol, g.data_type
            ));
        }
    }
}

/// Why a lookup failed, remembered so that the market's next lookups are not tried.
fn fail(failed: &mut Option<String>, venue: Venue, e: LoaderError) -> String {
    let why = format!("{} could not be asked ({e})", venue.title());
    failed.get_or_insert_with(|| why.clone());
    why
}

/// How many ordinals `[a, b]` holds for `kind`.
fn count(kind: Option<RecordKind>, a: i64, b: i64) -> u64 {
    match kind.map(RecordKind::sequence) {
        Some(Sequence::TimeGrid(iv)) => {
            let (mut n, mut t) = (0u64, a);
            while t <= b {
                n += 1;
                t = iv.next_open(t);
            }
            n
        }
        _ => (b - a + 1).max(0) as u64,
    }
}

/// Reads every message of `topic` up to its current end. Blocking.
pub fn verify_topic(k: &KafkaConfig, topic: &str, expect: &Expectation) -> Result<VerifyReport> {
    let range = expect.range;
    let mut cfg = kafka::base_config(k);
    cfg.set("group.id", "loader-producer-verify")
        .set("enable.auto.commit", "false")
        // What a fenced or failed transaction wrote was aborted: it is not in the topic for any
        // reader that asks for exactly once.
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760");
    kafka::apply_consumer_overrides(&mut cfg, k);
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

    let now = expect
        .now_ms
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    let mut groups: BTreeMap<(Venue, Market, String, RecordKind), Group> = BTreeMap::new();
    let mut wrong_type: BTreeMap<String, u64> = BTreeMap::new();
    let mut records = 0u64;
    let mut unreadable = 0u64;
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
        let Some(f) = msg
            .payload()
            .and_then(|p| serde_json::from_slice::<Fields>(p).ok())
        else {
            unreadable += 1;
            continue;
        };
        let (Some(key), Some(symbol), Some(ts)) = (f.key, f.symbol, f.timestamp) else {
            unreadable += 1;
            continue;
        };
        // Records without `exchange` are Binance's; of versions before markets, spot records.
        let Some(venue) = Venue::of_record(f.exchange) else {
            unreadable += 1;
            continue;
        };
        let Some(market) = venue.market_of_record(f.market.unwrap_or("spot")) else {
            unreadable += 1;
            continue;
        };
        let Some((kind, ordinal)) = RecordKind::from_market_key(venue, market, symbol, key) else {
            unreadable += 1;
            continue;
        };
        if expect.kind.is_some_and(|k| k != kind)
            || expect.market.is_some_and(|m| m != market)
            || expect.venue.is_some_and(|v| v != venue)
        {
            *wrong_type.entry(symbol.to_string()).or_default() += 1;
            continue;
        }
        let g = groups
            .entry((venue, market, symbol.to_string(), kind))
            .or_default();
        if kind.sequence_at(venue) == Sequence::Ids {
            g.timed.push((ordinal, ts));
        } else {
            g.values.push(ordinal);
        }
        if let (Some(first), Some(last)) = (f.first_update_id, f.final_update_id) {
            g.spans.push((first, last, f.previous_final_update_id));
        }
        g.first_ts = Some(g.first_ts.map_or(ts, |t| t.min(ts)));
        g.last_ts = Some(g.last_ts.map_or(ts, |t| t.max(ts)));
        if !f.key_matches(kind, venue, ordinal) {
            g.bad_keys += 1;
        }
        if range.is_some_and(|r| !r.contains(ts)) {
            g.outside += 1;
        }
    }
    // Groups SYMBOL and TYPE promise, even when the topic has nothing of them.
    if let Some(kind) = expect.kind {
        for s in &expect.symbols {
            let seen = groups.keys().any(|(_, _, sym, k)| sym == s && *k == kind);
            if !seen {
                groups
                    .entry((expect.home_venue, expect.home_market, s.clone(), kind))
                    .or_default();
            }
        }
    }

    let mut notes = Vec::new();
    let mut reports = Vec::new();
    for ((venue, market, symbol, kind), mut g) in groups {
        let sequence = kind.sequence_at(venue);
        let ids = sequence == Sequence::Ids;
        let total = (g.values.len() + g.timed.len()) as u64;
        g.values.sort_unstable();
        g.values.dedup();
        g.timed.sort_unstable();
        g.timed.dedup_by_key(|r| r.0);
        let unique = (g.values.len() + g.timed.len()) as u64;
        let duplicates = total - unique;
        let mut gap_times = Vec::new();
        let missing = if unique == 0 {
            Vec::new()
        } else {
            match sequence {
                Sequence::TimeGrid(iv) => {
                    let (mut from, mut to) = (g.values[0], *g.values.last().expect("values"));
                    if let Some(r) = range {
                        from = iv.align_up(r.start_ms);
                        let last_closed = iv.align_down(now);
                        if r.end_ms > last_closed {
                            notes.push(format!(
                                "{symbol} {}: the range reaches past the present; checked up to the last record",
                                kind.name()
                            ));
                        } else {
                            to = iv.prev_open(iv.align_up(r.end_ms));
                        }
                    }
                    candle_gaps(iv, &g.values, from, to)
                }
                Sequence::Ids => {
                    let (gaps, times) = id_gaps(&g.timed);
                    gap_times = times;
                    gaps
                }
                Sequence::UpdateSpans => update_gaps(&mut g.spans),
                Sequence::Samples | Sequence::Listed | Sequence::Ranked => Vec::new(),
            }
        };
        reports.push(GroupReport {
            exchange: venue,
            market,
            market_name: venue.market_name(market),
            symbol,
            data_type: kind.name(),
            records: total,
            first_timestamp: g.first_ts,
            last_timestamp: g.last_ts,
            duplicates,
            missing: missing.iter().map(|&(a, b)| count(Some(kind), a, b)).sum(),
            missing_ranges: missing.iter().take(10).copied().collect(),
            outside_range: g.outside,
            bad_keys: g.bad_keys,
            kind: Some(kind),
            all_missing: missing,
            gap_times,
            ends: match (ids, g.timed.first(), g.timed.last()) {
                (true, Some(&first), Some(&last)) => Some(IdEnds { first, last }),
                _ => None,
            },
            present: match sequence {
                Sequence::Listed | Sequence::Ranked => std::mem::take(&mut g.values),
                _ => Vec::new(),
            },
            ..GroupReport::default()
        });
    }
    for (symbol, n) in wrong_type {
        notes.push(format!(
            "{symbol}: {n} records are not of the TYPE (or MARKET) given"
        ));
        if let Some(r) = reports.iter_mut().find(|r| r.symbol == symbol) {
            r.wrong_type += n;
            continue;
        }
        reports.push(GroupReport {
            symbol,
            data_type: expect.kind.map(|k| k.name()).unwrap_or_default(),
            wrong_type: n,
            ..GroupReport::default()
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

/// Missing open times in `[from, to]` given the sorted unique open times present, as
/// inclusive ranges.
fn candle_gaps(iv: Interval, present: &[i64], from: i64, to: i64) -> Vec<(i64, i64)> {
    let mut ranges = Vec::new();
    let mut expected = from;
    for &t in present.iter().filter(|&&t| t >= from && t <= to) {
        if t > expected {
            ranges.push((expected, iv.prev_open(t)));
        }
        expected = iv.next_open(t);
    }
    if expected <= to {
        ranges.push((expected, iv.align_down(to)));
    }
    ranges
}

/// Update ids no diff-depth event covers, between the first and the last event.
/// Uncovered update ids between consecutive diff-depth events: on spot an event must start
/// right after the previous one's final id; a futures event names the previous final id (`pu`),
/// and a break there is reported as the ids between the two events.
fn update_gaps(spans: &mut Vec<(u64, u64, Option<u64>)>) -> Vec<(i64, i64)> {
    spans.sort_unstable_by_key(|s| s.1);
    // A duplicate is counted as one already; its copy must not read as a broken chain.
    spans.dedup_by_key(|s| s.1);
    spans
        .windows(2)
        .filter(|w| match w[1].2 {
            Some(pu) => pu != w[0].1,
            None => w[1].0 > w[0].1 + 1,
        })
        .map(|w| {
            (
                w[0].1 as i64 + 1,
                (w[1].0 as i64 - 1).max(w[0].1 as i64 + 1),
            )
        })
        .collect()
}

/// Missing ids between the smallest and largest present (sorted unique (id, time) pairs), with
/// the time of the record before each gap.
fn id_gaps(present: &[(i64, i64)]) -> (Vec<(i64, i64)>, Vec<i64>) {
    present
        .windows(2)
        .filter(|w| w[1].0 > w[0].0 + 1)
        .map(|w| ((w[0].0 + 1, w[1].0 - 1), w[0].1))
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_candle_and_id_gaps() {
        let iv: Interval = "1m".parse().unwrap();
        let present = [0, 60_000, 240_000];
        let gaps = candle_gaps(iv, &present, 0, 360_000);
        assert_eq!(gaps, vec![(120_000, 180_000), (300_000, 360_000)]);
        let kind = Some(RecordKind::Candles(iv));
        assert_eq!(gaps.iter().map(|&(a, b)| count(kind, a, b)).sum::<u64>(), 4);
        let timed: Vec<(i64, i64)> = [1, 2, 5, 6, 9].iter().map(|&i| (i, i * 10)).collect();
        assert_eq!(id_gaps(&timed), (vec![(3, 4), (7, 8)], vec![20, 60]));
        assert_eq!(count(Some(RecordKind::AggTrades), 3, 4), 2);
        let spot = |v: &[(u64, u64)]| -> Vec<(u64, u64, Option<u64>)> {
            v.iter().map(|&(a, b)| (a, b, None)).collect()
        };
        assert_eq!(update_gaps(&mut spot(&[(1, 5), (8, 9), (6, 7)])), vec![]);
        assert_eq!(
            update_gaps(&mut vec![
                (1, 5, Some(0)),
                (9, 12, Some(5)),
                (9, 12, Some(5))
            ]),
            vec![],
            "a duplicated futures event is no gap"
        );
        assert_eq!(update_gaps(&mut spot(&[(1, 5), (9, 9)])), vec![(6, 8)]);
        // Futures: ids jump between events; `pu` chains them.
        assert_eq!(
            update_gaps(&mut vec![
                (1, 5, Some(0)),
                (9, 12, Some(5)),
                (20, 30, Some(12))
            ]),
            vec![]
        );
        assert_eq!(
            update_gaps(&mut vec![(1, 5, Some(0)), (20, 30, Some(12))]),
            vec![(6, 19)],
            "the event ending at 12 is missing"
        );
    }
}
