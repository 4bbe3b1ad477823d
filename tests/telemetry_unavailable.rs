//! Telemetry is best effort: with the events topic failing (fault injected through librdkafka's
//! mock cluster), the data load still succeeds and the topic is complete.

mod support;

use exchange_sim::SimConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::types::RDKafkaRespErr;
use support::loader::run_loader_async;

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_events_topic_does_not_fail_the_load() {
    let sim = support::sim(SimConfig::default()).await;
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let cluster_thread = std::thread::spawn(move || {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("data", 1, 1).unwrap();
        cluster.create_topic("queue-control", 1, 1).unwrap();
        cluster.create_topic("queue-events", 1, 1).unwrap();
        cluster
            .topic_error(
                "queue-events",
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
            )
            .unwrap();
        tx.send(cluster.bootstrap_servers()).unwrap();
        let _ = stop_rx.recv();
    });
    let bootstrap = rx.recv().unwrap();
    let env = vec![
        ("SYMBOL", "BTCUSDT".to_string()),
        ("TYPE", "api_candles_1h".to_string()),
        ("TIME_RANGE", "2024-01-01:2024-02-01".to_string()),
        ("KAFKA_TOPIC", "data".to_string()),
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.clone()),
        ("BINANCE_API_URL", sim.base_url()),
        ("METRICS_PORT", "0".to_string()),
    ];
    let run = run_loader_async(env, vec![]).await;
    run.assert_ok();
    assert!(
        run.stdout.contains("Loaded and published 744 records"),
        "{}",
        run.stdout
    );
    // librdkafka refuses the event when it is queued if it already knows the topic's error,
    // else when the broker answers: either way it is logged, and the load goes on.
    assert!(
        run.stderr
            .contains("telemetry event could not be delivered")
            || run.stderr.contains("cannot queue a telemetry event"),
        "the failing events topic is logged: {}",
        run.stderr
    );
    let verify = run_loader_async(
        vec![
            ("KAFKA_BOOTSTRAP_SERVERS", bootstrap),
            ("KAFKA_TOPIC", "data".to_string()),
            ("TIME_RANGE", "2024-01-01:2024-02-01".to_string()),
        ],
        vec!["verify"],
    )
    .await;
    assert_eq!(verify.code, Some(0), "{}", verify.stdout);
    drop(stop_tx);
    cluster_thread.join().unwrap();
    sim.shutdown().await;
}
