//! Checks the test harness in `tests/support/broker.rs` against real nisshi brokers: a plain
//! broker, transactions (markers must not stall `consume_all`), and a SASL_SSL/SCRAM broker.

mod support;

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer, ConsumerContext},
    error::KafkaError,
    producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext},
    ClientContext,
};
use support::broker::{
    as_extra, client_config, consume_all, create_topic, create_topic_with, Broker, SecureBroker,
};

#[derive(Default)]
struct Deliveries {
    ok: AtomicUsize,
    failed: AtomicUsize,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                eprintln!("delivery failed: {e}");
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> BaseProducer<Deliveries> {
    let mut config = client_config(bootstrap, &[]);
    config
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "20000");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config
        .create_with_context(Deliveries::default())
        .expect("create producer")
}

fn record(i: usize) -> (String, String) {
    (format!("key-{i}"), format!(r#"{{"n":{i}}}"#))
}

/// Sends records `range` with their keys, flushes, and asserts every one was delivered.
fn send(producer: &BaseProducer<Deliveries>, topic: &str, range: std::ops::Range<usize>) {
    let count = range.len();
    for i in range {
        let (key, payload) = record(i);
        let mut rec = BaseRecord::to(topic).key(&key).payload(&payload);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((e, back)) => {
                    assert!(
                        matches!(
                            e.rdkafka_error_code(),
                            Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ),
                        "send: {e}"
                    );
                    rec = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    let context = producer.context();
    assert_eq!(
        context.failed.load(Ordering::Relaxed),
        0,
        "failed deliveries"
    );
    assert!(context.ok.load(Ordering::Relaxed) >= count);
}

fn expected(range: std::ops::Range<usize>) -> BTreeSet<(Vec<u8>, Vec<u8>)> {
    range
        .map(record)
        .map(|(k, v)| (k.into_bytes(), v.into_bytes()))
        .collect()
}

fn as_set(records: Vec<(Option<Vec<u8>>, Vec<u8>)>) -> BTreeSet<(Vec<u8>, Vec<u8>)> {
    records
        .into_iter()
        .map(|(k, v)| (k.expect("key"), v))
        .collect()
}

#[test]
fn plain_broker_round_trip() {
    let broker = Broker::plain();
    create_topic(&broker.bootstrap(), "harness-plain", 3);
    let producer = producer(&broker.bootstrap(), &[]);
    send(&producer, "harness-plain", 0..1000);

    let records = consume_all(&broker.bootstrap(), "harness-plain", &[]);
    assert_eq!(records.len(), 1000);
    assert_eq!(as_set(records), expected(0..1000));
}

#[test]
fn shared_broker_with_an_idempotent_producer() {
    let broker = Broker::shared();
    assert!(std::ptr::eq(broker, Broker::shared()));
    create_topic(&broker.bootstrap(), "harness-idempotent", 2);
    let producer = producer(&broker.bootstrap(), &[]);
    send(&producer, "harness-idempotent", 0..300);
    for isolation in ["read_committed", "read_uncommitted"] {
        let records = consume_all(
            &broker.bootstrap(),
            "harness-idempotent",
            &[("isolation.level", isolation)],
        );
        assert_eq!(as_set(records), expected(0..300), "{isolation}");
    }
}

/// nisshi 0.8.1 answers InitProducerId with a transactional.id with
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED ("transactions are not supported"). When this test
/// fails, a newer nisshi supports transactions.
#[test]
fn nisshi_refuses_transactions() {
    let broker = Broker::shared();
    let producer = producer(
        &broker.bootstrap(),
        &[("transactional.id", "harness-refused")],
    );
    let error = producer
        .init_transactions(Duration::from_secs(10))
        .expect_err("nisshi 0.8.1 accepted a transactional producer");
    assert!(
        error
            .to_string()
            .contains("Transactional Id authorization failed"),
        "{error}"
    );
}

/// Transaction markers take offsets but are never delivered; consume_all must still finish.
/// nisshi has no transactions, so this uses librdkafka's mock cluster.
#[test]
fn consume_all_skips_transaction_markers() {
    let mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    mock.create_topic("harness-txn", 2, 1).expect("mock topic");
    let bootstrap = mock.bootstrap_servers();

    let producer = producer(&bootstrap, &[("transactional.id", "harness-txn")]);
    producer
        .init_transactions(Duration::from_secs(10))
        .expect("init_transactions");
    for batch in 0..3 {
        producer.begin_transaction().expect("begin_transaction");
        send(&producer, "harness-txn", batch * 100..(batch + 1) * 100);
        producer
            .commit_transaction(Duration::from_secs(10))
            .expect("commit_transaction");
    }
    for isolation in ["read_committed", "read_uncommitted"] {
        let records = consume_all(&bootstrap, "harness-txn", &[("isolation.level", isolation)]);
        assert_eq!(as_set(records), expected(0..300), "{isolation}");
    }
}

#[test]
fn consume_all_of_an_empty_topic_is_empty() {
    let broker = Broker::shared();
    create_topic(&broker.bootstrap(), "harness-empty", 4);
    assert!(consume_all(&broker.bootstrap(), "harness-empty", &[]).is_empty());
}

fn secured() -> &'static SecureBroker {
    static SECURED: OnceLock<SecureBroker> = OnceLock::new();
    SECURED.get_or_init(|| Broker::secured("loader", "loader-secret"))
}

#[test]
fn secured_broker_round_trip() {
    let broker = secured();
    let settings = broker.client_settings();
    let extra = as_extra(&settings);
    create_topic_with(&broker.bootstrap(), "harness-secure", 2, &extra);
    let producer = producer(&broker.bootstrap(), &extra);
    send(&producer, "harness-secure", 0..200);

    let records = consume_all(&broker.bootstrap(), "harness-secure", &extra);
    assert_eq!(as_set(records), expected(0..200));

    // The IPv4 address works as the bootstrap too: the certificate names it.
    let records = consume_all(&broker.broker.bootstrap(), "harness-secure", &extra);
    assert_eq!(records.len(), 200);
}

/// Records the errors librdkafka reports, which say why a connection failed.
#[derive(Default)]
struct Errors(Mutex<Vec<String>>);

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.lock().unwrap().push(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Errors {}

/// Asserts that a metadata request with these settings fails within a few seconds, with a
/// client error that contains `why`.
fn assert_rejected(bootstrap: &str, settings: &[(&'static str, String)], why: &str) {
    let consumer: BaseConsumer<Errors> = client_config(bootstrap, &as_extra(settings))
        .create_with_context(Errors::default())
        .expect("create client");
    let started = Instant::now();
    let result = consumer.fetch_metadata(None, Duration::from_secs(3));
    assert!(result.is_err(), "{why}: metadata request succeeded");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{why}: took {:?}",
        started.elapsed()
    );
    // Error events reach the context while the client is polled.
    for _ in 0..10 {
        let _ = consumer.poll(Duration::from_millis(100));
    }
    let errors = consumer.context().0.lock().unwrap().clone();
    assert!(
        errors.iter().any(|error| error.contains(why)),
        "expected an error containing {why:?}, got {errors:#?}"
    );
}

#[test]
fn secured_broker_rejects_a_wrong_password() {
    let broker = secured();
    let settings = broker.client_settings_with("not-the-password", &broker.ca_path);
    assert_rejected(
        &broker.bootstrap(),
        &settings,
        "broker responded with invalid-proof",
    );
}

#[test]
fn secured_broker_rejects_an_unknown_user() {
    let broker = secured();
    let mut settings = broker.client_settings();
    for (key, value) in &mut settings {
        if *key == "sasl.username" {
            *value = "nobody".into();
        }
    }
    assert_rejected(
        &broker.bootstrap(),
        &settings,
        "broker responded with unknown-user",
    );
}

#[test]
fn secured_broker_is_not_trusted_with_another_ca() {
    let broker = secured();
    let settings = broker.client_settings_with(&broker.password, &broker.other_ca_path);
    assert_rejected(&broker.bootstrap(), &settings, "certificate verify failed");
}

#[test]
fn secured_broker_refuses_plaintext() {
    let broker = secured();
    let settings = vec![
        ("security.protocol", "SASL_PLAINTEXT".to_string()),
        ("sasl.mechanism", "SCRAM-SHA-512".into()),
        ("sasl.username", broker.user.clone()),
        ("sasl.password", broker.password.clone()),
    ];
    assert_rejected(&broker.bootstrap(), &settings, "brokers are down");
}
