//! `JobId`: what identifies one job (queue, exchange, market, type, range, symbols, shard), so
//! that resume continues only what this job published and never another job's records, and so
//! that two instances of the same job share one transactional id (the second fences the first).
//!
//! Every data record carries it as its last JSON field, [`JOB_FIELD`], `"<fingerprint>;p=<N>"`,
//! where `N` is the partition count the job's records are spread by: a job keeps the count of
//! its first attempt, so a symbol's records stay in one partition even when partitions are
//! added between attempts, and resume knows where to look.
//!
//! A field and not a Kafka header: librdkafka allocates a header list per message and frees it
//! per delivery, which cost a fifth of the loader's CPU on archive candles (measured; the field
//! costs a copy of the payload, within the benchmark's noise). No consumer needs to opt in to
//! read it, and it says which job wrote a document wherever the record ends up.

use sha2::{Digest, Sha256};

/// The JSON field every data record carries (not underscore-prefixed: ArangoDB reserves those).
pub const JOB_FIELD: &str = "loader_job";

/// A job's fingerprint: 32 hex digits of a SHA-256 over its identifying settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobId {
    fingerprint: String,
}

/// The settings that identify a job. Anything that changes which records a job publishes is
/// here; how it fetches them (source, page size, budget share) is not, so a retry with other
/// tuning still continues the same job.
#[derive(Debug, Clone)]
pub struct JobIdentityParts<'a> {
    pub queue_id: &'a str,
    pub exchange: &'a str,
    pub market: &'a str,
    pub data_type: &'a str,
    /// `start:end` in epoch ms, or `live` (with the Kubernetes Job's uid when known, see
    /// [`JobId::new`]).
    pub range: Option<(i64, i64)>,
    /// `JOB_UID`: the Kubernetes Job this run belongs to; only a live job without a range
    /// uses it (it has nothing else that tells today's job from yesterday's).
    pub job_uid: Option<&'a str>,
    /// Every symbol of the job, in `SYMBOL`'s order (shards pick from this list).
    pub symbols: &'a [String],
    pub shard_index: u32,
    pub shard_count: u32,
}

impl JobId {
    pub fn new(p: &JobIdentityParts<'_>) -> JobId {
        let range = match (p.range, p.job_uid) {
            (Some((a, b)), _) => format!("{a}:{b}"),
            (None, Some(uid)) => format!("live:{uid}"),
            (None, None) => "live".to_string(),
        };
        let text = format!(
            "loader-job v1\nqueue={}\nexchange={}\nmarket={}\ntype={}\nrange={range}\nsymbols={}\nshard={}/{}\n",
            p.queue_id,
            p.exchange,
            p.market,
            p.data_type,
            p.symbols.join(","),
            p.shard_index,
            p.shard_count
        );
        let digest = Sha256::digest(text.as_bytes());
        let fingerprint = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        JobId { fingerprint }
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The transactional id of the job's data producer: the same for every instance of the
    /// job, so a new one fences the old.
    pub fn transactional_id(&self) -> String {
        format!("loader-producer-{}", self.fingerprint)
    }

    /// The [`JOB_FIELD`] value for records spread over `partitions` partitions (`None`: the
    /// partitioner's choice, for message keys other than the symbol).
    pub fn tag(&self, partitions: Option<i32>) -> String {
        match partitions {
            Some(n) => format!("{};p={n}", self.fingerprint),
            None => self.fingerprint.clone(),
        }
    }

    /// What the sink appends to each record's JSON object in place of its closing brace: the
    /// [`JOB_FIELD`] with [`tag`](Self::tag)'s value (hex digits, `;`, `=` and digits: nothing to
    /// escape), and the brace.
    pub fn record_suffix(&self, partitions: Option<i32>) -> Vec<u8> {
        format!(",\"{JOB_FIELD}\":\"{}\"}}", self.tag(partitions)).into_bytes()
    }

    /// Whether a record's [`JOB_FIELD`] value says it was published by this job; with the
    /// partition count the job used, when it says.
    pub fn matches(&self, text: &str) -> Option<Option<i32>> {
        let (fp, rest) = match text.split_once(';') {
            Some((fp, rest)) => (fp, Some(rest)),
            None => (text, None),
        };
        if fp != self.fingerprint {
            return None;
        }
        Some(
            rest.and_then(|r| r.strip_prefix("p="))
                .and_then(|n| n.parse().ok()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts<'a>(symbols: &'a [String], range: Option<(i64, i64)>) -> JobIdentityParts<'a> {
        JobIdentityParts {
            queue_id: "q",
            exchange: "binance",
            market: "spot",
            data_type: "api_candles_1m",
            range,
            job_uid: None,
            symbols,
            shard_index: 0,
            shard_count: 1,
        }
    }

    #[test]
    fn the_fingerprint_follows_what_the_job_publishes() {
        let s = vec!["BTCUSDT".to_string()];
        let feb = JobId::new(&parts(&s, Some((1, 2))));
        assert_eq!(feb, JobId::new(&parts(&s, Some((1, 2)))), "stable");
        assert_eq!(feb.fingerprint().len(), 32);
        assert_ne!(feb, JobId::new(&parts(&s, Some((0, 2)))), "another range");
        let mut other_shard = parts(&s, Some((1, 2)));
        other_shard.shard_index = 1;
        other_shard.shard_count = 2;
        assert_ne!(feb, JobId::new(&other_shard));
        let mut live = parts(&s, None);
        let today = JobId::new(&JobIdentityParts {
            job_uid: Some("uid-1"),
            ..live.clone()
        });
        live.job_uid = Some("uid-2");
        assert_ne!(today, JobId::new(&live), "live jobs of two Kubernetes Jobs");
    }

    #[test]
    fn tags_name_the_job_and_its_partition_count() {
        let s = vec!["BTCUSDT".to_string()];
        let id = JobId::new(&parts(&s, Some((1, 2))));
        assert_eq!(id.matches(&id.tag(Some(3))), Some(Some(3)));
        assert_eq!(id.matches(&id.tag(None)), Some(None));
        let other = JobId::new(&parts(&s, Some((1, 3))));
        assert_eq!(other.matches(&id.tag(Some(3))), None);
        assert_eq!(id.matches(""), None);
    }

    #[test]
    fn the_suffix_closes_a_record_as_valid_json_with_the_tag_last() {
        let s = vec!["BTCUSDT".to_string()];
        let id = JobId::new(&parts(&s, Some((1, 2))));
        let mut record = br#"{"_key":"BTCUSDT_1m_0","open":"1.0"}"#.to_vec();
        record.pop();
        record.extend_from_slice(&id.record_suffix(Some(4)));
        let v: serde_json::Value = serde_json::from_slice(&record).unwrap();
        assert_eq!(v["open"], "1.0");
        assert_eq!(id.matches(v[JOB_FIELD].as_str().unwrap()), Some(Some(4)));
    }
}
