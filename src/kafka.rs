//! Kafka connection settings shared by the sink, `verify` and telemetry: security (PLAINTEXT or
//! SASL_SSL with SCRAM-SHA-512 and a custom CA), pass-through properties, a connection check that
//! fails fast with the broker's own reason, and creating the data topic.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::config::KafkaConfig;
use crate::error::{LoaderError, Result};

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

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Remembers librdkafka's global errors so a failed connection can say why. An error no amount
/// of waiting fixes (wrong credentials, an untrusted certificate) is kept apart, because
/// librdkafka follows it with generic "all brokers down" errors that would hide it.
#[derive(Default)]
pub struct ErrorCapture {
    last: Mutex<Option<(RDKafkaErrorCode, String)>>,
    fatal: Mutex<Option<String>>,
}

impl ErrorCapture {
    pub fn record(&self, error: &KafkaError, reason: &str) {
        let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
        let lower = reason.to_ascii_lowercase();
        let fatal = matches!(
            code,
            RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL
        ) || lower.contains("authentication failed")
            || lower.contains("certificate verify failed")
            || lower.contains("ssl handshake failed");
        if fatal {
            self.fatal
                .lock()
                .unwrap()
                .get_or_insert_with(|| reason.to_string());
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
            let lower = message.to_ascii_lowercase();
            if lower.contains("authentication failed")
                || lower.contains("certificate verify failed")
            {
                self.fatal
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| message.to_string());
            }
        }
    }

    /// The first error that waiting will not fix, if any was seen.
    pub fn fatal(&self) -> Option<String> {
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

/// Waits until the cluster answers a metadata request, failing at once on authentication or TLS
/// errors (a configuration error, exit 2: retrying repeats it) and after `connect_timeout`
/// otherwise (exit 1: the cluster may come back). Blocking: call from a blocking context.
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
                if let Some(reason) = errors.fatal() {
                    return Err(LoaderError::config(describe_fatal(k, &reason)));
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
        if let Some(reason) = errors.fatal() {
            return Err(LoaderError::config(describe_fatal(k, &reason)));
        }
    }
}

fn describe_fatal(k: &KafkaConfig, reason: &str) -> String {
    let lower = reason.to_ascii_lowercase();
    let hint = if lower.contains("authentication") {
        " (check KAFKA_USER_PRODUCER and KAFKA_PASSWORD_PRODUCER)"
    } else if lower.contains("certificate") || lower.contains("handshake") {
        " (check CA_PATH: it must be the CA that signed the brokers' certificates, and the broker host name must match them)"
    } else {
        ""
    };
    format!(
        "Kafka at {} refused the connection: {reason}{hint}",
        k.bootstrap
    )
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
