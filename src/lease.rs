//! `JobLease`: at most one instance of a job publishes, on Kafka clusters without transactions.
//!
//! A transactional producer fences an older instance of its job on the broker. Where the cluster
//! refuses transactions (the idempotent producer) and `KAFKA_LEASE_TOPIC` is set, the job holds a
//! lease instead: a consumer
//! group of its own (`loader-producer-lease-<fingerprint>`, so only instances of the same job
//! meet in it) subscribed to a one-partition topic (`KAFKA_LEASE_TOPIC`), whose partition 0 is
//! the lease. The cooperative-sticky assignor leaves it with its holder when another member
//! joins, so:
//! - a second instance of a running job waits as a standby, before it reads the topic's tail;
//! - the holder releases the lease by leaving the group when its sink is done (finished, stopped,
//!   failed), or the group takes it away when the holder stops heartbeating (killed, partitioned)
//!   for the session timeout; the standby then resumes after what the holder published;
//! - a holder whose lease is revoked or lost stops publishing at once ([`JobLease::lost`]) and the
//!   job ends as fenced (exit 3).
//!
//! The lease is opt-in because it costs: a restarted attempt whose predecessor died without
//! leaving the group waits up to the session timeout, a new group waits for Kafka's
//! `group.initial.rebalance.delay.ms` (3 s), and a holder that cannot reach the group coordinator
//! for the session timeout (a broker outage) stops with exit 3 instead of riding the outage out.
//!
//! Weaker than broker-side fencing in one case: a holder cut off from the group coordinator but
//! not from the partition leaders may write for up to one heartbeat interval after the group gave
//! the lease away. The lease topic holds no messages; nothing is fetched from it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;

use crate::error::{LoaderError, Result};
use crate::identity::JobId;
use crate::kafka::KafkaConfig;
use crate::kafka::{self, ErrorCapture};

/// How long the group keeps a silent member's partitions (a killed holder's lease) before it
/// hands them to a standby.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How often members heartbeat: the longest a cut-off holder may go on after losing the lease.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// How long dropping the lease waits for the consumer to leave the group.
const CLOSE_WAIT: Duration = Duration::from_secs(3);
/// How often the lease's thread serves the consumer (rebalances, errors).
const POLL: Duration = Duration::from_millis(100);

/// What the lease's consumer thread tells the job.
#[derive(Default)]
struct LeaseState {
    /// This instance owns partition 0 of the lease topic.
    held: AtomicBool,
    /// The lease was held and then revoked or lost.
    lost: AtomicBool,
    /// The group has assigned partitions without giving this instance the lease.
    standby: AtomicBool,
    /// A consumer error that waiting will not fix (authorization), as librdkafka says it.
    refused: Mutex<Option<String>>,
    errors: ErrorCapture,
}

struct LeaseContext {
    state: Arc<LeaseState>,
    topic: String,
}

impl LeaseContext {
    fn has_lease(&self, tpl: &rdkafka::TopicPartitionList) -> bool {
        tpl.elements()
            .iter()
            .any(|e| e.topic() == self.topic && e.partition() == 0)
    }
}

impl ClientContext for LeaseContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.state.errors.record_log(level, message);
        kafka::log_librdkafka(level, fac, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.state.errors.record(&error, reason);
        tracing::debug!(%error, reason, "kafka lease consumer error");
    }
    // The cooperative assignor calls no rebalance callback for an empty assignment: a member
    // that joined without the lease shows in the group's statistics.
    fn stats(&self, statistics: Statistics) {
        if let Some(g) = statistics.cgrp {
            if g.join_state == "steady" && g.rebalance_cnt > 0 && g.assignment_size == 0 {
                self.state.standby.store(true, Ordering::SeqCst);
            }
        }
    }
}

impl ConsumerContext for LeaseContext {
    // Revocation is acted on before librdkafka gives the partition up, so the sink stops first.
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            if self.has_lease(tpl) && self.state.held.swap(false, Ordering::SeqCst) {
                self.state.lost.store(true, Ordering::SeqCst);
            }
        }
    }
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            if self.has_lease(tpl) {
                self.state.held.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// The job's lease, held from [`acquire`](JobLease::acquire) until dropped (which leaves the
/// group, so a standby takes over at once).
pub struct JobLease {
    state: Arc<LeaseState>,
    stop: Arc<AtomicBool>,
    /// Says when the consumer has left the group and closed.
    closed: std::sync::mpsc::Receiver<()>,
    group: String,
}

impl JobLease {
    /// The consumer group that holds `job`'s lease.
    pub fn group_for(job: &JobId) -> String {
        format!("loader-producer-lease-{}", job.fingerprint())
    }

    /// Joins the job's lease group and waits until this instance holds the lease, while
    /// `cancelled` says no (then [`LoaderError::Cancelled`]). Blocking.
    pub fn acquire(
        k: &KafkaConfig,
        topic: &str,
        job: &JobId,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<JobLease> {
        let group = Self::group_for(job);
        let state = Arc::new(LeaseState::default());
        let mut cfg = kafka::base_config(k);
        kafka::apply_consumer_overrides(&mut cfg, k);
        // After the overrides: the lease depends on these.
        cfg.set("group.id", &group)
            .set("client.id", "loader-producer-lease")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", ms(SESSION_TIMEOUT))
            .set("heartbeat.interval.ms", ms(HEARTBEAT_INTERVAL))
            .set("statistics.interval.ms", "1000")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "latest");
        let consumer: BaseConsumer<LeaseContext> = cfg
            .create_with_context(LeaseContext {
                state: state.clone(),
                topic: topic.to_string(),
            })
            .map_err(|e| LoaderError::kafka(format!("cannot create the lease consumer: {e}")))?;
        kafka::wait_for_cluster(consumer.client(), &state.errors, k, &|| {
            let _ = consumer.poll(Duration::ZERO);
        })?;
        let timeout = k.connect_timeout.max(Duration::from_secs(10));
        let partitions = kafka::ensure_topic(consumer.client(), &cfg, topic, 1, timeout)
            .map_err(|e| LoaderError::kafka(format!("KAFKA_LEASE_TOPIC: {e}")))?;
        if partitions != 1 {
            tracing::warn!(
                topic,
                partitions,
                "the lease topic has more than one partition: partition 0 is the lease, and a second instance may take it over from a running one (which then stops, exit 3) instead of waiting"
            );
        }
        consumer
            .subscribe(&[topic])
            .map_err(|e| LoaderError::kafka(format!("cannot join lease group {group}: {e}")))?;

        let stop = Arc::new(AtomicBool::new(false));
        let (closed_tx, closed) = std::sync::mpsc::channel();
        {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::Builder::new()
                .name("job-lease".into())
                .spawn(move || {
                    serve(consumer, &state, &stop);
                    let _ = closed_tx.send(());
                })
                .map_err(|e| LoaderError::Other(format!("cannot start the lease thread: {e}")))?;
        }
        let lease = JobLease {
            state,
            stop,
            closed,
            group,
        };
        lease.wait(topic, cancelled)?;
        Ok(lease)
    }

    fn wait(&self, topic: &str, cancelled: &dyn Fn() -> bool) -> Result<()> {
        let started = Instant::now();
        let mut said = false;
        loop {
            if self.state.held.load(Ordering::SeqCst) {
                tracing::info!(group = %self.group, topic, waited = ?started.elapsed(), "holding this job's lease: no other instance of it publishes");
                return Ok(());
            }
            if let Some(why) = self.state.refused.lock().unwrap().clone() {
                return Err(LoaderError::kafka(format!(
                    "cannot hold this job's lease (consumer group {}, topic {topic}, KAFKA_LEASE_TOPIC): {why}; the loader's Kafka user needs Read on the group and on the topic",
                    self.group
                )));
            }
            if let Some(why) = self.state.errors.fatal() {
                return Err(LoaderError::kafka(format!(
                    "cannot hold this job's lease (consumer group {}): {why}",
                    self.group
                )));
            }
            // Said once: the group answered without the lease, or it is slow to answer (a
            // holder that stopped answering keeps a rebalance waiting for the session timeout).
            if !said && self.state.standby.load(Ordering::SeqCst) {
                tracing::warn!(group = %self.group, topic,
                    "another instance of this job holds its lease: waiting as a standby until it finishes or stops answering (then this one resumes after what it published)");
                said = true;
            } else if !said && started.elapsed() > SESSION_TIMEOUT / 2 {
                tracing::warn!(group = %self.group, topic,
                    "waiting for this job's lease: its consumer group is rebalancing (an instance that stopped answering is dropped after {:?})", SESSION_TIMEOUT);
                said = true;
            }
            if cancelled() {
                return Err(LoaderError::Cancelled);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The lease was revoked or lost after it was held: another instance may publish now, so
    /// this one must not publish anything more.
    pub fn lost(&self) -> bool {
        self.state.lost.load(Ordering::SeqCst)
    }

    /// The consumer group this instance holds (or waits for).
    pub fn group(&self) -> &str {
        &self.group
    }
}

impl Drop for JobLease {
    /// Leaves the group (the consumer's close), so a standby takes the lease at once. Waits a
    /// little for that, never long: with the broker gone the group drops this member after the
    /// session timeout anyway, and the job must not wait for Kafka on its way out.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.closed.recv_timeout(CLOSE_WAIT);
    }
}

/// Serves the lease consumer until told to stop, then leaves the group.
fn serve(consumer: BaseConsumer<LeaseContext>, state: &LeaseState, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        // The topic is never written; a message would be someone else's and mean nothing here.
        if let Some(Err(e)) = consumer.poll(POLL) {
            let text = e.to_string();
            if text.to_ascii_lowercase().contains("authoriz") {
                state.refused.lock().unwrap().get_or_insert(text);
            } else {
                tracing::debug!(error = %e, "lease consumer error");
            }
        }
    }
    // Leaving the group hands the lease on; dropping the consumer closes it (bounded by
    // librdkafka's own timeouts).
    consumer.unsubscribe();
    drop(consumer);
}

fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}
