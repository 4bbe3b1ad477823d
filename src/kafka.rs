//! Kafka connection settings shared by the sink, `verify` and telemetry: security (PLAINTEXT or
//! SASL_SSL with SCRAM-SHA-512 and a custom CA), pass-through properties, a connection check that
//! fails fast with the broker's own reason, and creating the data topic.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};

use crate::error::{LoaderError, Result};
use crate::secret::Secret;

/// SASL_SSL settings; absent means PLAINTEXT.
#[derive(Debug, Clone)]
pub struct KafkaSecurity {
    pub user: String,
    pub password: Secret,
    pub ca_path: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub bootstrap: String,
    pub security: Option<KafkaSecurity>,
    /// KAFKA_PRODUCER_CONFIG pairs; values are treated as secrets in logs.
    pub overrides: Vec<(String, Secret)>,
    /// KAFKA_CONSUMER_CONFIG pairs, for the consumers only.
    pub consumer_overrides: Vec<(String, Secret)>,
    pub connect_timeout: Duration,
    pub topic_partitions: i32,
}

/// The properties every client of the loader uses (data producer, telemetry producer, control
/// consumer, admin client, `verify`): brokers, security, then KAFKA_PRODUCER_CONFIG, so a user's
/// override (a SASL or TLS setting, say) reaches every client. Producers apply the overrides
/// again after their own settings, consumers apply KAFKA_CONSUMER_CONFIG after theirs.
pub fn base_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = connection_config(k);
    apply_overrides(&mut c, k);
    c
}

fn connection_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.bootstrap)
        .set("client.id", "loader-producer")
        .set(
            "socket.connection.setup.timeout.ms",
            ms(k.connect_timeout).max(1000).to_string(),
        );
    if let Some(sec) = &k.security {
        c.set("security.protocol", "SASL_SSL")
            .set("sasl.mechanisms", "SCRAM-SHA-512")
            .set("sasl.username", &sec.user)
            .set("sasl.password", sec.password.expose())
            .set("ssl.endpoint.identification.algorithm", "https");
        if let Some(ca) = &sec.ca_path {
            c.set("ssl.ca.location", ca.to_string_lossy());
        }
    } else {
        c.set("security.protocol", "PLAINTEXT");
    }
    c
}

/// Applies KAFKA_PRODUCER_CONFIG last, so the user's word wins.
pub fn apply_overrides(c: &mut ClientConfig, k: &KafkaConfig) {
    for (key, value) in &k.overrides {
        c.set(key, value.expose());
    }
}

/// Applies KAFKA_CONSUMER_CONFIG last on a consumer.
pub fn apply_consumer_overrides(c: &mut ClientConfig, k: &KafkaConfig) {
    for (key, value) in &k.consumer_overrides {
        c.set(key, value.expose());
    }
}

/// A group of librdkafka properties the loader's guarantees rest on; an override of one of them
/// in KAFKA_PRODUCER_CONFIG or KAFKA_CONSUMER_CONFIG is refused unless KAFKA_ALLOW_UNSAFE_CONFIG
/// is set (checked in `KafkaArgs::resolve`).
pub struct GuardedGroup {
    /// What the group is, for messages.
    pub name: &'static str,
    /// What an override can break, for messages.
    pub why: &'static str,
    /// Property names, lower case; one ending in `*` stands for every name it begins.
    pub keys: &'static [&'static str],
}

/// Every guarded property, in one place.
pub const GUARDED_PROPERTIES: &[GuardedGroup] = &[
    // Idempotence: a retried batch is written once, in order; without it a retry duplicates or
    // reorders records.
    GuardedGroup {
        name: "idempotence",
        why: "without it a retried batch is written twice or out of order",
        keys: &["enable.idempotence", "enable.gapless.guarantee"],
    },
    // acks=all: an acknowledged record is on every in-sync replica, so records_written and the
    // resume point never count a record a broker failure can lose.
    GuardedGroup {
        name: "acks",
        why: "anything but acks=all lets an acknowledged record be lost when a broker fails",
        keys: &["acks", "request.required.acks"],
    },
    // The default partitioner puts every record of a symbol in one partition, in order: resume
    // finds an earlier attempt's last record there.
    GuardedGroup {
        name: "partitioner",
        why: "resume looks for a symbol's records in the partition the default partitioner picks",
        keys: &["partitioner*"],
    },
    // Idempotence keeps order only with at most 5 requests in flight per connection.
    GuardedGroup {
        name: "in-flight limit",
        why: "idempotent ordering holds only with at most 5 requests in flight",
        keys: &["max.in.flight.requests.per.connection", "max.in.flight"],
    },
    // A record not acknowledged in time fails the job (the sink allows 120 s, so a broker's
    // restart is waited out); a shorter timeout turns a restart into a failed load, and a record
    // given up on may still have been written.
    GuardedGroup {
        name: "timeouts",
        why: "they decide when a record not yet acknowledged counts as lost",
        keys: &[
            "message.timeout.ms",
            "delivery.timeout.ms",
            "transaction.timeout.ms",
        ],
    },
    // Retries are how a record survives a leader change or a broker's restart; librdkafka's
    // idempotent producer retries without limit within the message timeout.
    GuardedGroup {
        name: "retries",
        why: "fewer retries turn a leader change into a failed load",
        keys: &["retries", "message.send.max.retries"],
    },
    // A transactional producer or a consumer reading uncommitted records sees a different topic
    // than the one the loader and verify reason about.
    GuardedGroup {
        name: "transactions",
        why: "they change which records the loader's producers write and its consumers read",
        keys: &["transactional.id", "isolation.level"],
    },
    // Where the records go: KAFKA_BOOTSTRAP_SERVERS says it, for every client alike.
    GuardedGroup {
        name: "bootstrap servers",
        why: "KAFKA_BOOTSTRAP_SERVERS names the cluster; an override sends some clients elsewhere",
        keys: &["bootstrap.servers", "metadata.broker.list"],
    },
    // SASL_SSL whenever credentials are given: an override can send them in clear text.
    GuardedGroup {
        name: "security protocol",
        why: "it can turn off TLS and send the credentials in clear text",
        keys: &["security.protocol"],
    },
    // The credentials and mechanism come from KAFKA_USER_PRODUCER / KAFKA_PASSWORD_PRODUCER.
    GuardedGroup {
        name: "SASL",
        why: "the credentials and mechanism come from KAFKA_USER_PRODUCER and KAFKA_PASSWORD_PRODUCER",
        keys: &["sasl.*"],
    },
    // The brokers' certificates are checked against CA_PATH and their host names: without the
    // check, anyone on the path can read the records and the password.
    GuardedGroup {
        name: "certificate checks",
        why: "without them the brokers are not authenticated and the password can be intercepted",
        keys: &[
            "ssl.endpoint.identification.algorithm",
            "enable.ssl.certificate.verification",
            "ssl.ca.*",
            "ssl_ca*",
            "ssl.certificate.verify_cb",
        ],
    },
];

/// The guarded group `key` belongs to, compared case-insensitively and without surrounding
/// whitespace.
pub fn guarded_group(key: &str) -> Option<&'static GuardedGroup> {
    let key = key.trim().to_ascii_lowercase();
    GUARDED_PROPERTIES.iter().find(|g| {
        g.keys.iter().any(|k| match k.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => key == *k,
        })
    })
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Why a librdkafka error ends the run at once as a configuration error (exit 2): a retry
/// would meet the same refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Kafka refused the credentials (SASL authentication or its mechanism handshake failed).
    Credentials,
    /// A certificate could not be verified: the broker's (unknown CA, self-signed, expired,
    /// host name mismatch) or, with mutual TLS, the loader's own (the broker's TLS alert).
    Certificate,
}

/// Sorts a librdkafka error into a refusal no amount of waiting fixes (`Some`) or an ordinary,
/// retryable failure (`None`). `code` is the error's code where librdkafka gives one (error
/// events), `None` for log lines. A TLS handshake dropped mid-way ("SSL handshake failed:
/// Disconnected", as during a broker's rolling restart), an unreachable cluster and an
/// authorization failure at produce time (TOPIC_AUTHORIZATION_FAILED) are ordinary failures.
pub fn classify_failure(code: Option<RDKafkaErrorCode>, reason: &str) -> Option<Refusal> {
    let lower = reason.to_ascii_lowercase();
    // OpenSSL's and librdkafka's wording for a certificate that did not verify, on either side.
    const CERTIFICATE: &[&str] = &[
        "certificate verify failed",
        "broker certificate could not be verified",
        "self-signed certificate",
        "self signed certificate",
        "unable to get local issuer certificate",
        "unable to get issuer certificate",
        "unable to verify the first certificate",
        "certificate has expired",
        "certificate is not yet valid",
        "hostname mismatch",
        "ip address mismatch",
        "alert unknown ca",
        "alert bad certificate",
        "alert certificate required",
    ];
    if CERTIFICATE.iter().any(|w| lower.contains(w)) {
        return Some(Refusal::Certificate);
    }
    let credentials = matches!(
        code,
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed)
    ) || lower.contains("authentication failed")
        || (lower.contains("sasl") && lower.contains("mechanism handshake failed"));
    credentials.then_some(Refusal::Credentials)
}

/// Remembers librdkafka's global errors so a failed connection can say why. An error no amount
/// of waiting fixes (wrong credentials, an untrusted certificate: [`classify_failure`]) is kept
/// apart, because librdkafka follows it with generic "all brokers down" errors that would hide
/// it.
#[derive(Default)]
pub struct ErrorCapture {
    last: Mutex<Option<(RDKafkaErrorCode, String)>>,
    fatal: Mutex<Option<(Refusal, String)>>,
}

impl ErrorCapture {
    pub fn record(&self, error: &KafkaError, reason: &str) {
        let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
        if let Some(refusal) = classify_failure(Some(code), reason) {
            self.fatal
                .lock()
                .unwrap()
                .get_or_insert_with(|| (refusal, reason.to_string()));
        }
        *self.last.lock().unwrap() = Some((code, reason.to_string()));
    }

    pub fn last(&self) -> Option<(RDKafkaErrorCode, String)> {
        self.last.lock().unwrap().clone()
    }

    /// librdkafka's error-level log lines arrive on its own threads without polling, so they
    /// are watched for fatal reasons too.
    pub fn record_log(&self, level: RDKafkaLogLevel, message: &str) {
        if matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
        ) {
            if let Some(refusal) = classify_failure(None, message) {
                self.fatal
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| (refusal, message.to_string()));
            }
        }
    }

    /// The first error that waiting will not fix, if any was seen.
    pub fn fatal(&self) -> Option<String> {
        self.refusal().map(|(_, reason)| reason)
    }

    /// The first error that waiting will not fix, with what kind of refusal it is.
    fn refusal(&self) -> Option<(Refusal, String)> {
        self.fatal.lock().unwrap().clone()
    }
}

/// Logs librdkafka's own lines through tracing and captures global errors.
#[derive(Default)]
pub struct CapturingContext {
    pub errors: ErrorCapture,
}

impl ClientContext for CapturingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.errors.record_log(level, message);
        log_librdkafka(level, fac, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.record(&error, reason);
        tracing::debug!(%error, reason, "kafka client error");
    }
}

impl rdkafka::consumer::ConsumerContext for CapturingContext {}

pub fn log_librdkafka(level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", facility = fac, "{message}")
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", facility = fac, "{message}")
        }
        _ => tracing::debug!(target: "librdkafka", facility = fac, "{message}"),
    }
}

/// Waits until the cluster answers a metadata request, failing at once when Kafka refuses the
/// credentials or a certificate does not verify (a configuration error, exit 2: retrying repeats
/// it, see [`classify_failure`]) and after `connect_timeout` otherwise (exit 1: the cluster may
/// come back). Blocking: call from a blocking context.
///
/// librdkafka reports why a connection failed only to a client that is polled, so `poll` is
/// called between attempts.
pub fn wait_for_cluster<C: ClientContext>(
    client: &Client<C>,
    errors: &ErrorCapture,
    k: &KafkaConfig,
    poll: &dyn Fn(),
) -> Result<()> {
    let deadline = Instant::now() + k.connect_timeout;
    loop {
        poll();
        let left = deadline.saturating_duration_since(Instant::now());
        match client.fetch_metadata(
            None,
            left.min(Duration::from_millis(500))
                .max(Duration::from_millis(50)),
        ) {
            Ok(md) if !md.brokers().is_empty() => return Ok(()),
            Ok(_) => {}
            Err(e) => {
                if let Some((refusal, reason)) = errors.refusal() {
                    return Err(LoaderError::config(describe_fatal(k, refusal, &reason)));
                }
                if Instant::now() >= deadline {
                    let why = errors
                        .last()
                        .map(|(_, r)| r)
                        .unwrap_or_else(|| e.to_string());
                    return Err(LoaderError::kafka(format!(
                        "cannot reach Kafka at KAFKA_BOOTSTRAP_SERVERS {} within {:?} (KAFKA_CONNECT_TIMEOUT): {why}",
                        k.bootstrap, k.connect_timeout
                    )));
                }
            }
        }
        if let Some((refusal, reason)) = errors.refusal() {
            return Err(LoaderError::config(describe_fatal(k, refusal, &reason)));
        }
    }
}

fn describe_fatal(k: &KafkaConfig, refusal: Refusal, reason: &str) -> String {
    let hint = match refusal {
        Refusal::Credentials => {
            " (check KAFKA_USER_PRODUCER and KAFKA_PASSWORD_PRODUCER, and that the listener accepts SCRAM-SHA-512)"
        }
        Refusal::Certificate if reason.to_ascii_lowercase().contains("alert") => {
            " (the brokers did not accept the loader's client certificate: check ssl.certificate.location and \
             ssl.key.location in KAFKA_PRODUCER_CONFIG)"
        }
        Refusal::Certificate => {
            " (check CA_PATH: it must be the CA that signed the brokers' certificates, and the broker host name must match them)"
        }
    };
    format!(
        "Kafka at {} refused the connection: {reason}{hint}",
        k.bootstrap
    )
}

/// How long [`flush`] sleeps between two looks at the delivery reports.
const FLUSH_STEP: Duration = Duration::from_millis(1);

/// Waits until every record `producer` has queued is acknowledged and its delivery report served
/// (through the producer's context), or `timeout` passes (`KafkaError::Flush`, timed out).
/// Blocking.
///
/// rdkafka's own `flush` serves the reports in `poll(100 ms)` steps that always run to their
/// end, so it returns up to 100 ms after the last acknowledgement: at the end of every job, for
/// its telemetry, and with transactions at every commit (once a second), when the sink stands
/// still. A shorter `poll` does not help: it asks librdkafka for whole milliseconds and spins
/// through the last one. So this looks at the reports every [`FLUSH_STEP`] and sleeps between.
pub fn flush<C: ProducerContext>(producer: &BaseProducer<C>, timeout: Duration) -> KafkaResult<()> {
    let deadline = Instant::now() + timeout;
    loop {
        // Wakes the broker threads to send what lingers, and serves no report itself.
        match producer.flush(Duration::ZERO) {
            Ok(()) => return Ok(()),
            Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) => {}
            Err(e) => return Err(e),
        }
        producer.poll(Duration::ZERO);
        if producer.in_flight_count() == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
        }
        std::thread::sleep(FLUSH_STEP);
    }
}

/// Creates `topic` unless it exists, then waits until its partitions have leaders; returns
/// its partition count.
pub fn ensure_topic<C: ClientContext + 'static>(
    client: &Client<C>,
    admin_config: &ClientConfig,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<i32> {
    let ready = |client: &Client<C>| -> Result<Option<i32>> {
        let md = client
            .fetch_metadata(None, timeout)
            .map_err(|e| LoaderError::kafka(format!("cannot list Kafka topics: {e}")))?;
        Ok(md
            .topics()
            .iter()
            .find(|t| {
                t.name() == topic
                    && t.error().is_none()
                    && !t.partitions().is_empty()
                    && t.partitions().iter().all(|p| p.leader() >= 0)
            })
            .map(|t| t.partitions().len() as i32))
    };
    if let Some(n) = ready(client)? {
        return Ok(n);
    }
    let admin: AdminClient<CapturingContext> = admin_config
        .create_with_context(CapturingContext::default())
        .map_err(|e| LoaderError::kafka(format!("cannot create a Kafka admin client: {e}")))?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LoaderError::Other(e.to_string()))?;
    let result = rt.block_on(admin.create_topics([&new_topic], &opts));
    std::thread::spawn(move || drop(admin));
    match result {
        Ok(results) => {
            for r in results {
                if let Err((name, code)) = r {
                    if code != RDKafkaErrorCode::TopicAlreadyExists {
                        tracing::warn!(topic = %name, error = %code, "could not create the topic; relying on broker auto-creation");
                    }
                }
            }
        }
        Err(e) => {
            tracing::warn!(topic, error = %e, "topic creation request failed; relying on broker auto-creation")
        }
    }
    // Wait for the topic to show up with leaders (auto-creation or the request above).
    let deadline = Instant::now() + timeout;
    loop {
        // Asking for this topic's metadata also triggers auto-creation where the broker allows it.
        let _ = client.fetch_metadata(Some(topic), Duration::from_millis(500));
        if let Some(n) = ready(client)? {
            return Ok(n);
        }
        if Instant::now() >= deadline {
            return Err(LoaderError::kafka(format!(
                "topic {topic} does not exist and could not be created within {timeout:?}: create it, or allow the loader's user to create topics"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DROPPED_HANDSHAKE: &str =
        "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: Disconnected: \
        connecting to a PLAINTEXT broker listener? (after 3ms in state SSL_HANDSHAKE)";
    const UNVERIFIED: &str = "SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: \
        broker certificate could not be verified, verify that ssl.ca.location is correctly configured or \
        root CA certificates are installed (install ca-certificates package) (after 4ms in state SSL_HANDSHAKE)";
    const SCRAM_HANDSHAKE: &str =
        "sasl_ssl://kafka-0.kafka:9093/0: SASL SCRAM-SHA-512 mechanism handshake \
        failed: Broker: Request not valid in current SASL state";
    const BAD_PASSWORD: &str =
        "sasl_ssl://kafka-0.kafka:9093/bootstrap: SASL authentication error: \
        Authentication failed during authentication due to invalid credentials with SASL mechanism \
        SCRAM-SHA-512 (after 305ms in state AUTH_REQ)";

    #[test]
    fn a_dropped_tls_handshake_is_an_ordinary_failure() {
        for code in [
            None,
            Some(RDKafkaErrorCode::SSL),
            Some(RDKafkaErrorCode::BrokerTransportFailure),
        ] {
            assert_eq!(classify_failure(code, DROPPED_HANDSHAKE), None, "{code:?}");
        }
        // Other ways a TLS connection drops while a broker restarts.
        for reason in [
            "ssl://kafka-1:9093/1: SSL handshake failed: Connection reset by peer (after 2ms in state SSL_HANDSHAKE)",
            "ssl://kafka-1:9093/1: SSL transport error: Connection reset by peer (after 5012ms in state UP)",
        ] {
            assert_eq!(
                classify_failure(Some(RDKafkaErrorCode::SSL), reason),
                None,
                "{reason}"
            );
        }
    }

    #[test]
    fn an_unreachable_cluster_and_a_refused_topic_are_ordinary_failures() {
        let cases = [
            (
                RDKafkaErrorCode::BrokerTransportFailure,
                "sasl_ssl://kafka-0.kafka:9093/bootstrap: Connect to ipv4#10.0.0.5:9093 failed: \
                 Connection refused (after 0ms in state CONNECT)",
            ),
            (RDKafkaErrorCode::AllBrokersDown, "3/3 brokers are down"),
            (
                RDKafkaErrorCode::Resolve,
                "kafka-0.kafka:9093/bootstrap: Failed to resolve 'kafka-0.kafka:9093': \
                 Name or service not known (after 2ms in state CONNECT)",
            ),
            (
                RDKafkaErrorCode::TopicAuthorizationFailed,
                "Broker: Topic authorization failed",
            ),
            (
                RDKafkaErrorCode::ClusterAuthorizationFailed,
                "Broker: Cluster authorization failed",
            ),
        ];
        for (code, reason) in cases {
            assert_eq!(classify_failure(Some(code), reason), None, "{reason}");
            assert_eq!(classify_failure(None, reason), None, "{reason}");
        }
    }

    #[test]
    fn refused_credentials_are_configuration_errors() {
        for reason in [SCRAM_HANDSHAKE, BAD_PASSWORD] {
            assert_eq!(
                classify_failure(Some(RDKafkaErrorCode::Authentication), reason),
                Some(Refusal::Credentials),
                "{reason}"
            );
            // The same words in a log line, where librdkafka gives no code.
            assert_eq!(
                classify_failure(None, reason),
                Some(Refusal::Credentials),
                "{reason}"
            );
        }
        assert_eq!(
            classify_failure(
                Some(RDKafkaErrorCode::SaslAuthenticationFailed),
                "Broker: SASL Authentication failed"
            ),
            Some(Refusal::Credentials)
        );
    }

    #[test]
    fn certificates_that_do_not_verify_are_configuration_errors() {
        for reason in [
            UNVERIFIED,
            // OpenSSL 1.1's wording.
            "ssl://kafka:9093/bootstrap: SSL handshake failed: error:1416F086:SSL routines:\
             tls_process_server_certificate:certificate verify failed: broker certificate could not be \
             verified, verify that ssl.ca.location is correctly configured or root CA certificates are \
             installed (after 11ms in state SSL_HANDSHAKE)",
            "SSL handshake failed: certificate verify failed: self-signed certificate in certificate chain",
            "SSL handshake failed: certificate verify failed: unable to get local issuer certificate",
            "SSL handshake failed: certificate verify failed: hostname mismatch",
            // The broker refusing the loader's own certificate (mutual TLS).
            "ssl://kafka:9093/bootstrap: SSL handshake failed: error:0A000418:SSL routines::tlsv1 alert \
             unknown ca (after 6ms in state SSL_HANDSHAKE)",
        ] {
            for code in [None, Some(RDKafkaErrorCode::SSL)] {
                assert_eq!(
                    classify_failure(code, reason),
                    Some(Refusal::Certificate),
                    "{code:?} {reason}"
                );
            }
        }
    }

    fn cluster() -> KafkaConfig {
        KafkaConfig {
            bootstrap: "kafka:9093".into(),
            security: None,
            overrides: Vec::new(),
            consumer_overrides: Vec::new(),
            connect_timeout: Duration::from_secs(1),
            topic_partitions: 1,
        }
    }

    #[test]
    fn capture_keeps_only_refusals_apart() {
        let errors = ErrorCapture::default();
        errors.record(
            &KafkaError::Global(RDKafkaErrorCode::SSL),
            DROPPED_HANDSHAKE,
        );
        errors.record_log(RDKafkaLogLevel::Error, DROPPED_HANDSHAKE);
        assert_eq!(errors.fatal(), None);
        assert_eq!(
            errors.last().map(|(_, r)| r).as_deref(),
            Some(DROPPED_HANDSHAKE)
        );

        errors.record(&KafkaError::Global(RDKafkaErrorCode::SSL), UNVERIFIED);
        errors.record(
            &KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        assert_eq!(errors.fatal().as_deref(), Some(UNVERIFIED));

        let logged = ErrorCapture::default();
        logged.record_log(RDKafkaLogLevel::Warning, BAD_PASSWORD);
        assert_eq!(logged.fatal(), None, "only error-level lines count");
        logged.record_log(RDKafkaLogLevel::Error, BAD_PASSWORD);
        assert_eq!(
            logged.refusal(),
            Some((Refusal::Credentials, BAD_PASSWORD.to_string()))
        );
    }

    #[test]
    fn hints_match_the_refusal() {
        let k = cluster();
        for reason in [SCRAM_HANDSHAKE, BAD_PASSWORD] {
            let m = describe_fatal(&k, Refusal::Credentials, reason);
            assert!(
                m.contains("KAFKA_PASSWORD_PRODUCER") && !m.contains("CA_PATH"),
                "{m}"
            );
        }
        let m = describe_fatal(&k, Refusal::Certificate, UNVERIFIED);
        assert!(m.contains("CA_PATH") && m.contains("kafka:9093"), "{m}");
        let m = describe_fatal(
            &k,
            Refusal::Certificate,
            "SSL handshake failed: error:0A000418:SSL routines::tlsv1 alert unknown ca",
        );
        assert!(m.contains("client certificate"), "{m}");
    }

    #[test]
    fn the_guarded_properties_are_every_one_the_guarantees_rest_on() {
        for key in [
            "enable.idempotence",
            "enable.gapless.guarantee",
            "acks",
            "request.required.acks",
            "partitioner",
            "partitioner_cb",
            "max.in.flight.requests.per.connection",
            "max.in.flight",
            "message.timeout.ms",
            "delivery.timeout.ms",
            "transaction.timeout.ms",
            "retries",
            "message.send.max.retries",
            "transactional.id",
            "isolation.level",
            "bootstrap.servers",
            "metadata.broker.list",
            "security.protocol",
            "sasl.mechanisms",
            "sasl.mechanism",
            "sasl.username",
            "sasl.password",
            "sasl.oauthbearer.config",
            "ssl.endpoint.identification.algorithm",
            "enable.ssl.certificate.verification",
            "ssl.ca.location",
            "ssl.ca.pem",
            "ssl.ca.certificate.stores",
            "ssl_ca",
            // Case and surrounding whitespace do not matter.
            "  ACKS ",
            "Enable.Idempotence",
            "SASL.Password",
        ] {
            assert!(guarded_group(key).is_some(), "{key:?} is not guarded");
        }
        for key in [
            "linger.ms",
            "compression.type",
            "batch.size",
            "batch.num.messages",
            "client.id",
            "socket.keepalive.enable",
            "socket.timeout.ms",
            "ssl.key.location",
            "ssl.key.password",
            "ssl.certificate.location",
            "statistics.interval.ms",
            "queue.buffering.max.messages",
        ] {
            assert!(guarded_group(key).is_none(), "{key:?} should stay allowed");
        }
        for group in GUARDED_PROPERTIES {
            assert!(
                !group.why.is_empty() && !group.keys.is_empty(),
                "{}",
                group.name
            );
            for key in group.keys {
                assert_eq!(
                    key.to_ascii_lowercase(),
                    *key,
                    "keys are compared in lower case"
                );
            }
        }
    }
}
