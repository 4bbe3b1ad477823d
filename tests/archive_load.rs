//! History from data.binance.vision archives (`SOURCE`): the real binary loads from the exchange
//! simulator's archive and REST API into the real broker, and the topics are compared byte for
//! byte across sources, across the 2025 switch to microsecond timestamps and across month seams;
//! the archive's known faults each get a run.

mod support;

use std::time::Duration;

use chrono::NaiveDate;
use exchange_sim::{ArchiveFaults, SimConfig, SimServer, SimStats};
use serde_json::Value;
use support::loader::{
    closed_port, fresh_topic, job_env, read_raw, read_topic, run_loader_async, verify_topic, with,
    Run,
};

/// A simulator with a trade every 10 s on average (8,640 a day: days of trades stay small).
async fn sim(archive: ArchiveFaults) -> SimServer {
    let cfg = SimConfig {
        agg_trade_spacing_ms: 10_000,
        archive,
        ..SimConfig::default()
    };
    support::sim(cfg).await
}

fn ms(date: &str) -> i64 {
    NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

/// Loads `ty` for `range` with `SOURCE=source` into a fresh topic; returns the run, the topic
/// and what the simulator served meanwhile.
async fn load(
    sim: &SimServer,
    ty: &str,
    range: &str,
    source: &str,
    extra: &[(&'static str, &str)],
) -> (Run, String, SimStats) {
    let topic = fresh_topic(&format!("{}-{source}", ty.replace('_', "-")));
    let env = with(
        job_env(&sim.base_url(), &topic, "BTCUSDT", ty, range),
        &[("SOURCE", source)],
    );
    let run = run_loader_async(with(env, extra), vec![]).await;
    (run, topic, sim.stats())
}

fn data_requests(st: &SimStats) -> u64 {
    [
        "/api/v3/klines",
        "/api/v3/aggTrades",
        "/api/v3/historicalTrades",
    ]
    .iter()
    .map(|p| st.per_endpoint.get(*p).copied().unwrap_or(0))
    .sum()
}

fn verify_ok(topic: &str, range: &str, ty: &str, sim: &SimServer) -> Value {
    let v = verify_topic(
        topic,
        range,
        &[
            ("SYMBOL", "BTCUSDT".into()),
            ("TYPE", ty.into()),
            ("BINANCE_API_URL", sim.base_url()),
        ],
        &[],
    );
    assert_eq!(v.code, Some(0), "verify {topic}: {}{}", v.stdout, v.stderr);
    serde_json::from_str(&v.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_archive_and_auto_publish_byte_identical_topics() {
    let sim = sim(ArchiveFaults::default()).await;
    // Across the switch to microsecond archive times (2025-01-01) and a month seam; the odd
    // bounds make partial days that SOURCE=archive reads from filtered daily files and
    // SOURCE=auto from REST, and whole months come from monthly files.
    let cases = [
        ("api_candles_1m", "2024-12-30:2025-01-02".to_string()),
        (
            "api_candles_1h",
            format!(
                "{}:{}",
                ms("2024-11-15") + 43_200_000,
                ms("2025-01-02") + 21_600_000
            ),
        ),
        ("api_candles_1M", "2024-10-01:2025-02-01".to_string()),
        (
            "api_trades",
            format!(
                "{}:{}",
                ms("2024-12-30") + 3_600_000,
                ms("2025-01-02") - 1_234
            ),
        ),
        (
            "api_raw_trades",
            format!(
                "{}:{}",
                ms("2024-12-31") + 7_777,
                ms("2025-01-01") + 3_600_000
            ),
        ),
    ];
    for (ty, range) in cases {
        let before = sim.stats();
        let (rest, rest_topic, after_rest) = load(&sim, ty, &range, "rest", &[]).await;
        rest.assert_ok();
        assert_eq!(
            after_rest.archive_requests, before.archive_requests,
            "{ty}: SOURCE=rest never asks the archive"
        );
        let (archive, archive_topic, after_archive) = load(&sim, ty, &range, "archive", &[]).await;
        archive.assert_ok();
        assert_eq!(
            after_archive.requests, after_rest.requests,
            "{ty}: SOURCE=archive never touches the REST API: {after_archive:?}"
        );
        let (auto, auto_topic, _) = load(&sim, ty, &range, "auto", &[]).await;
        auto.assert_ok();

        let expected = read_raw(&rest_topic);
        assert!(!expected.is_empty(), "{ty}: the range has records");
        assert!(
            read_raw(&archive_topic) == expected,
            "{ty}: SOURCE=archive differs from SOURCE=rest"
        );
        assert!(
            read_raw(&auto_topic) == expected,
            "{ty}: SOURCE=auto differs from SOURCE=rest"
        );
        assert!(
            archive.stdout.contains("archive file(s), 0 over REST"),
            "{ty}: {}",
            archive.stdout
        );
        let report = verify_ok(&auto_topic, &range, ty, &sim);
        assert_eq!(
            report["groups"][0]["records"],
            expected.len() as u64,
            "{ty}"
        );
    }
    // The µs files were read: 2025's daily and monthly files were downloaded.
    let st = sim.stats();
    for name in [
        "BTCUSDT-1m-2025-01-01.zip",
        "BTCUSDT-1h-2024-12.zip",
        "BTCUSDT-1mo-2025-01.zip",
        "BTCUSDT-aggTrades-2025-01-01.zip",
        "BTCUSDT-trades-2024-12-31.zip",
    ] {
        assert!(
            st.archive_downloads.get(name).is_some_and(|n| *n >= 1),
            "{name} was not used: {:?}",
            st.archive_downloads
        );
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_up_to_now_uses_monthly_daily_and_rest_files_as_the_archive_has_them() {
    let sim = sim(ArchiveFaults::default()).await;
    // The exchange's present is a chosen instant, half a minute into 2026-03-17 12:00 (the
    // loader takes its time from the exchange): what is closed, published or "today" cannot
    // change under the test.
    let now = ms("2026-03-17") + 12 * 3_600_000 + 30_000;
    sim.clock().set_now_ms(now);
    let start = ms("2026-02-01");
    let range = format!("{start}:{now}");
    let events = fresh_topic("events-auto-now");
    let (run, topic, st) = load(
        &sim,
        "api_candles_1m",
        &range,
        "auto",
        &[("QUEUE_EVENTS_TOPIC", &events)],
    )
    .await;
    run.assert_ok();
    // Last month from its monthly file; every day of this month before today (yesterday
    // included: the archive has it) from its daily file; today over REST.
    assert_eq!(
        st.archive_downloads.get("BTCUSDT-1m-2026-02.zip"),
        Some(&1),
        "{:?}",
        st.archive_downloads
    );
    let daily = st
        .archive_downloads
        .keys()
        .filter(|k| k.len() == "BTCUSDT-1m-2024-01-01.zip".len())
        .count();
    assert_eq!(daily, 16, "{:?}", st.archive_downloads);
    assert!(data_requests(&st) >= 1, "today came over REST: {st:?}");
    assert!(
        run.stdout.contains("reaches past the present"),
        "{}",
        run.stdout
    );
    // The range ends inside the open minute: the job loads up to the last closed one and says
    // so in `finished`.
    let finished = read_topic(&events)
        .into_iter()
        .map(|(_, e)| e)
        .find(|e| e["status"] == "finished")
        .expect("a finished event");
    assert_eq!(
        finished["loaded_until"], "2026-03-17T12:00:00.000Z",
        "{finished}"
    );
    verify_ok(
        &topic,
        "2026-02-01:2026-03-17T12:00:00.000Z",
        "api_candles_1m",
        &sim,
    );
    let a = read_raw(&topic);
    assert_eq!(a.len(), (28 + 16) * 1440 + 12 * 60);

    // With a two-day publication delay, the last two days are not in the archive yet: they
    // come over REST, and the result is the same.
    sim.clock().set_now_ms(now);
    sim.set_archive_faults(ArchiveFaults {
        daily_delay: Duration::from_secs(2 * 86_400),
        ..ArchiveFaults::default()
    });
    let (run, delayed_topic, st2) = load(&sim, "api_candles_1m", &range, "auto", &[]).await;
    run.assert_ok();
    assert_eq!(
        st2.archive_downloads.get("BTCUSDT-1m-2026-03-16.zip"),
        st.archive_downloads.get("BTCUSDT-1m-2026-03-16.zip"),
        "no new download of yesterday"
    );
    assert!(data_requests(&st2) > data_requests(&st));
    assert!(read_raw(&delayed_topic) == a, "same candles either way");

    // The whole range, by the exchange's clock, still reaches past the present: checked up to
    // the last record. Once the 12:00 minute has closed the topic lacks it, as verify says, and
    // the next run of the job loads it.
    sim.set_archive_faults(ArchiveFaults::default());
    sim.clock().set_now_ms(now);
    let report = verify_ok(&topic, &range, "api_candles_1m", &sim);
    assert_eq!(report["groups"][0]["missing"], 0, "{report}");
    sim.clock().set_now_ms(now + 120_000);
    let v = verify_topic(
        &topic,
        &range,
        &[
            ("SYMBOL", "BTCUSDT".into()),
            ("TYPE", "api_candles_1m".into()),
            ("BINANCE_API_URL", sim.base_url()),
        ],
        &[],
    );
    assert_eq!(v.code, Some(1), "{}{}", v.stdout, v.stderr);
    let report: Value = serde_json::from_str(&v.stdout).unwrap();
    let noon = now - 30_000;
    assert_eq!(
        report["groups"][0]["missing_ranges"],
        serde_json::json!([[noon, noon]]),
        "{report}"
    );
    let env = with(
        job_env(&sim.base_url(), &topic, "BTCUSDT", "api_candles_1m", &range),
        &[("SOURCE", "auto")],
    );
    run_loader_async(env, vec![]).await.assert_ok();
    verify_ok(&topic, &range, "api_candles_1m", &sim);
    assert_eq!(read_raw(&topic).len(), a.len() + 1);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn archive_faults_fall_back_or_are_survived_and_nothing_is_lost_or_doubled() {
    let name = |d: &str| format!("BTCUSDT-1m-2024-01-0{d}.zip");
    let faults = ArchiveFaults {
        missing_days: vec!["2024-01-02".into()],
        bad_checksum: vec![name("3")],
        corrupt: vec![(name("4"), 1)],
        truncate: vec![(name("5"), 1)],
        duplicate_rows: vec![name("6")],
        nested_copy: vec![name("7")],
        ..ArchiveFaults::default()
    };
    let sim = sim(faults).await;
    let range = "2024-01-01:2024-01-08";
    let (rest, rest_topic, before) = load(&sim, "api_candles_1m", range, "rest", &[]).await;
    rest.assert_ok();
    let (run, topic, st) = load(&sim, "api_candles_1m", range, "auto", &[]).await;
    run.assert_ok();
    assert!(
        read_raw(&topic) == read_raw(&rest_topic),
        "the same records as over REST, once each"
    );
    let report = verify_ok(&topic, range, "api_candles_1m", &sim);
    assert_eq!(report["groups"][0]["records"], 7 * 1440);
    // The missing day and the file whose CHECKSUM disagrees came over REST: 2 pages each.
    assert_eq!(data_requests(&st) - data_requests(&before), 4, "{st:?}");
    assert_eq!(
        st.archive_downloads.get(&name("3")),
        Some(&3),
        "a mismatch is downloaded again, then given up"
    );
    assert_eq!(
        st.archive_downloads.get(&name("4")),
        Some(&2),
        "a corrupt download is retried"
    );
    assert!(
        st.archive_downloads
            .get(&name("5"))
            .is_some_and(|n| *n >= 2),
        "a cut download is resumed"
    );
    assert!(
        run.stdout
            .contains(&format!("{}: loaded over REST because", name("3"))),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("falling back to REST")
            || run.stderr.contains("loading its span over REST"),
        "{}",
        run.stderr
    );

    // SOURCE=archive never falls back: the missing day is an error naming the file.
    let (strict, _, _) = load(&sim, "api_candles_1m", range, "archive", &[]).await;
    assert_eq!(strict.code, Some(1), "{}", strict.stderr);
    assert!(
        strict.stderr.contains(&name("2")) && strict.stderr.contains("SOURCE=auto"),
        "{}",
        strict.stderr
    );
    // … and so is a file that does not match its CHECKSUM.
    let (strict, _, _) = load(
        &sim,
        "api_candles_1m",
        "2024-01-03:2024-01-03",
        "archive",
        &[],
    )
    .await;
    assert_eq!(strict.code, Some(1), "{}", strict.stderr);
    assert!(
        strict.stderr.contains("does not match its CHECKSUM"),
        "{}",
        strict.stderr
    );
    sim.shutdown().await;
}

/// Binance's files sometimes lack rows that REST still serves, with a CHECKSUM that matches the
/// short file: `auto` loads the hole over REST before the rows after it, so the topic is the
/// same as a REST load, byte for byte; `archive` cannot: it says so in its log and summary, and
/// `verify` finds the hole it left.
#[tokio::test(flavor = "multi_thread")]
async fn rows_missing_from_an_archive_file_are_loaded_over_rest_in_order() {
    let holed = ["BTCUSDT-1m-2024-02.zip", "BTCUSDT-aggTrades-2024-01-03.zip"];
    let sim = sim(ArchiveFaults {
        missing_rows: holed.iter().map(|n| n.to_string()).collect(),
        ..ArchiveFaults::default()
    })
    .await;
    for (ty, range, file) in [
        ("api_candles_1m", "2024-01-30:2024-03-01", holed[0]),
        ("api_trades", "2024-01-02:2024-01-05", holed[1]),
    ] {
        let s0 = sim.stats();
        let (rest, rest_topic, after_rest) = load(&sim, ty, range, "rest", &[]).await;
        rest.assert_ok();
        let expected = read_raw(&rest_topic);
        let (archive, archive_topic, _) = load(&sim, ty, range, "archive", &[]).await;
        archive.assert_ok();
        // Published as the file has it, and said so: never silently.
        assert!(
            archive
                .stdout
                .contains(&format!("{file}: records missing between"))
                && archive.stdout.contains("REST not asked"),
            "{ty}: the summary names the hole: {}",
            archive.stdout
        );
        assert!(
            archive
                .stderr
                .contains("lacks records that should lie between"),
            "{ty}: the log says it: {}",
            archive.stderr
        );
        let short = read_raw(&archive_topic).len();
        assert!(
            short < expected.len(),
            "{ty}: the file really lacks rows ({short} of {})",
            expected.len()
        );
        let v = verify_topic(
            &archive_topic,
            range,
            &[
                ("SYMBOL", "BTCUSDT".into()),
                ("TYPE", ty.into()),
                ("BINANCE_API_URL", sim.base_url()),
            ],
            &[],
        );
        assert_ne!(v.code, Some(0), "{ty}: verify finds the hole: {}", v.stdout);

        let st0 = sim.stats();
        let (auto, auto_topic, st) = load(&sim, ty, range, "auto", &[]).await;
        auto.assert_ok();
        assert!(
            read_raw(&auto_topic) == expected,
            "{ty}: SOURCE=auto differs from SOURCE=rest"
        );
        verify_ok(&auto_topic, range, ty, &sim);
        assert!(
            auto.stdout
                .contains(&format!("{file}: records missing between")),
            "{ty}: {}",
            auto.stdout
        );
        assert!(
            st.archive_downloads.get(file).is_some_and(|n| *n >= 1),
            "{ty}: the file was used"
        );
        // Only the hole came over REST, not the file's span.
        let rest_requests = data_requests(&after_rest) - data_requests(&s0);
        let auto_requests = data_requests(&st) - data_requests(&st0);
        assert!(
            auto_requests * 4 < rest_requests,
            "{ty}: {auto_requests} requests, a REST load made {rest_requests}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn header_rows_are_read_and_an_empty_range_is_not_an_error() {
    let sim = sim(ArchiveFaults {
        header: true,
        ..ArchiveFaults::default()
    })
    .await;
    let range = "2024-03-01:2024-03-03";
    let (run, topic, _) = load(&sim, "api_trades", range, "archive", &[]).await;
    run.assert_ok();
    let (rest, rest_topic, _) = load(&sim, "api_trades", range, "rest", &[]).await;
    rest.assert_ok();
    assert!(
        read_raw(&topic) == read_raw(&rest_topic),
        "header rows are not records"
    );

    // Before the symbol was listed there is nothing: the job finishes with 0 records and
    // verify, asking the exchange, agrees the range is empty.
    let empty = "2016-01-01:2016-01-03";
    let (run, topic, _) = load(&sim, "api_candles_1h", empty, "auto", &[]).await;
    run.assert_ok();
    assert!(run.stdout.contains("published 0 records"), "{}", run.stdout);
    let report = verify_ok(&topic, empty, "api_candles_1h", &sim);
    assert_eq!(report["groups"][0]["empty_confirmed"], true, "{report}");
    sim.shutdown().await;
}

/// An archive that cannot be reached (egress that allows only the REST host is common) is found
/// out by the first probe, said once and routed around at once: `auto` loads everything over
/// REST without retrying a single probe, and `SOURCE=archive` fails naming `ARCHIVE_URL`.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_archive_is_said_once_and_rest_loads_everything() {
    let sim = sim(ArchiveFaults::default()).await;
    let nowhere = format!("http://127.0.0.1:{}", closed_port());
    // Two whole months and some days: dozens of files to ask about.
    let range = "2024-01-01:2024-03-05";
    let (run, topic, st) = load(
        &sim,
        "api_candles_1h",
        range,
        "auto",
        &[("ARCHIVE_URL", &nowhere)],
    )
    .await;
    run.assert_ok();
    let said = run.stderr.matches("asks it nothing more").count();
    assert_eq!(said, 1, "said once: {}", run.stderr);
    assert!(
        !run.stderr.contains("retrying") && !run.stderr.contains("falling back to REST"),
        "no probe retried, no warning per file: {}",
        run.stderr
    );
    assert!(
        st.archive_downloads.is_empty(),
        "{:?}",
        st.archive_downloads
    );
    let report = verify_ok(&topic, range, "api_candles_1h", &sim);
    assert_eq!(report["records"], 64 * 24, "{report}");

    let (run, _, _) = load(
        &sim,
        "api_candles_1h",
        range,
        "archive",
        &[("ARCHIVE_URL", &nowhere)],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("SOURCE=archive")
            && run.stderr.contains(&format!("ARCHIVE_URL {nowhere}")),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.matches("asks it nothing more").count(), 1);
    sim.shutdown().await;
}

/// ARCHIVE_CONCURRENCY and FETCH_CONCURRENCY hold for the job, not per symbol: four symbols
/// with room for two archive files and three REST pages never have more under way at once (as
/// the simulator sees it), and each symbol's topic is exact. Per symbol, four symbols had
/// eight files on disk and twelve pages in flight.
#[tokio::test(flavor = "multi_thread")]
async fn archive_files_and_rest_pages_are_bounded_for_the_job_not_per_symbol() {
    let symbols = "BTCUSDT,ETHUSDT,BNBUSDT,SOLUSDT";
    // Slow bodies and answers, so every symbol's downloads and pages would overlap.
    let cfg = SimConfig {
        agg_trade_spacing_ms: 10_000,
        archive: ArchiveFaults {
            bandwidth: 400_000,
            ..ArchiveFaults::default()
        },
        faults: exchange_sim::Faults {
            latency: Duration::from_millis(40),
            ..Default::default()
        },
        ..SimConfig::default()
    };
    let sim = support::sim(cfg).await;
    let cases = [
        ("api_trades", "2024-03-01:2024-03-04", "archive"),
        ("api_candles_1m", "2024-03-01:2024-03-04", "rest"),
    ];
    for (ty, range, source) in cases {
        let topic = fresh_topic(&format!("bounded-{source}"));
        let env = with(
            job_env(&sim.base_url(), &topic, symbols, ty, range),
            &[
                ("SOURCE", source),
                ("ARCHIVE_CONCURRENCY", "2"),
                ("FETCH_CONCURRENCY", "3"),
            ],
        );
        run_loader_async(env, vec![]).await.assert_ok();
        let v = verify_topic(
            &topic,
            range,
            &[
                ("SYMBOL", symbols.into()),
                ("TYPE", ty.into()),
                ("BINANCE_API_URL", sim.base_url()),
            ],
            &[],
        );
        assert_eq!(v.code, Some(0), "verify {topic}: {}{}", v.stdout, v.stderr);
    }
    let st = sim.stats();
    eprintln!(
        "at once: {} archive downloads, {} REST requests",
        st.archive_max_downloads_at_once, st.max_requests_at_once
    );
    assert_eq!(
        st.archive_downloads.len(),
        12,
        "three daily files of each symbol: {:?}",
        st.archive_downloads
    );
    assert!(
        st.archive_max_downloads_at_once <= 2,
        "at most ARCHIVE_CONCURRENCY=2 files for the whole job, saw {} downloads at once",
        st.archive_max_downloads_at_once
    );
    // verify asks REST nothing for a complete candle topic; the load's pages were 3 at a time.
    assert!(
        st.max_requests_at_once <= 3,
        "at most FETCH_CONCURRENCY=3 REST pages for the whole job, saw {} requests at once",
        st.max_requests_at_once
    );
}
