//! End-to-end tests of the bulk archive (`/data/spot/…`, the `data.binance.vision` layout) over
//! real HTTP on loopback: file contents against the REST endpoints (ms before 2025, µs from
//! 2025 on), the layout's rules, CHECKSUM files, publication and listing rules, every archive
//! fault, HEAD and byte ranges, statistics and the on-disk cache.

mod common;

use common::{request, start, Resp};

use std::io::{Cursor, Read};
use std::time::{Duration, Instant};

use exchange_sim::{ArchiveFaults, Faults, SimConfig, SimServer};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DAY: i64 = 86_400_000;
/// 2024-01-01T00:00:00Z.
const JAN_1_2024: i64 = 1_704_067_200_000;
/// 2025-01-01T00:00:00Z, from when spot archives write µs.
const JAN_1_2025: i64 = 1_735_689_600_000;

async fn get(server: &SimServer, path: &str) -> Resp {
    request(server.local_addr(), "GET", path, &[]).await
}

/// A configuration with few trades (one a minute), for tests where volume does not matter.
fn sparse() -> SimConfig {
    SimConfig {
        agg_trade_spacing_ms: 60_000,
        ..SimConfig::default()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `YYYY-MM-DD` of a time in ms.
fn day_name(t: i64) -> String {
    let days = t.div_euclid(DAY);
    // Civil date from days since the epoch (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn daily_klines(symbol: &str, iv: &str, day: &str) -> String {
    format!("/data/spot/daily/klines/{symbol}/{iv}/{symbol}-{iv}-{day}.zip")
}

fn monthly_klines(symbol: &str, iv: &str, month: &str) -> String {
    format!("/data/spot/monthly/klines/{symbol}/{iv}/{symbol}-{iv}-{month}.zip")
}

fn daily(kind: &str, symbol: &str, day: &str) -> String {
    format!("/data/spot/daily/{kind}/{symbol}/{symbol}-{kind}-{day}.zip")
}

/// The entries of a zip: `(name, contents)`.
fn unzip(bytes: &[u8]) -> Vec<(String, String)> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).expect("a zip");
    (0..zip.len())
        .map(|i| {
            let mut f = zip.by_index(i).unwrap();
            let mut text = String::new();
            f.read_to_string(&mut text).unwrap();
            (f.name().unwrap().to_string(), text)
        })
        .collect()
}

/// The CSV of a zip that must hold exactly `<stem>.csv`.
fn csv_of(bytes: &[u8], stem: &str) -> String {
    let entries = unzip(bytes);
    assert_eq!(entries.len(), 1, "{:?}", entries.iter().map(|e| &e.0));
    assert_eq!(entries[0].0, format!("{stem}.csv"));
    entries.into_iter().next().unwrap().1
}

/// Downloads a zip (asserting HTTP 200) and returns its CSV.
async fn fetch_csv(server: &SimServer, path: &str) -> String {
    let r = get(server, path).await;
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    let stem = path.rsplit('/').next().unwrap().trim_end_matches(".zip");
    csv_of(&r.body, stem)
}

/// A JSON value as it appears in a CSV cell.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        other => other.to_string(),
    }
}

/// Every REST kline opened in `[start, end)`, as CSV lines.
async fn rest_kline_lines(
    server: &SimServer,
    symbol: &str,
    iv: &str,
    start: i64,
    end: i64,
) -> Vec<String> {
    let mut lines = Vec::new();
    let mut from = start;
    loop {
        let page = get(
            server,
            &format!(
                "/api/v3/klines?symbol={symbol}&interval={iv}&startTime={from}&endTime={}&limit=1000",
                end - 1
            ),
        )
        .await
        .json();
        let rows = page.as_array().unwrap();
        for row in rows {
            let cells: Vec<String> = row.as_array().unwrap().iter().map(cell).collect();
            lines.push(cells.join(","));
        }
        if rows.len() < 1000 {
            return lines;
        }
        from = rows.last().unwrap()[0].as_i64().unwrap() + 1;
    }
}

/// Every REST aggregate trade with time in `[start, end)`, as CSV lines (`aggTrades` from the
/// first id at or after `start`, paged with `fromId`).
async fn rest_agg_lines(server: &SimServer, symbol: &str, start: i64, end: i64) -> Vec<String> {
    let first = get(
        server,
        &format!(
            "/api/v3/aggTrades?symbol={symbol}&startTime={start}&endTime={}&limit=1",
            start + 3_599_999
        ),
    )
    .await
    .json();
    let mut from = first[0]["a"].as_u64().expect("a trade in the first hour");
    let mut lines = Vec::new();
    loop {
        let page = get(
            server,
            &format!("/api/v3/aggTrades?symbol={symbol}&fromId={from}&limit=1000"),
        )
        .await
        .json();
        let rows = page.as_array().unwrap();
        for r in rows {
            if r["T"].as_i64().unwrap() >= end {
                return lines;
            }
            let cells: Vec<String> = ["a", "p", "q", "f", "l", "T", "m", "M"]
                .iter()
                .map(|k| cell(&r[*k]))
                .collect();
            lines.push(cells.join(","));
        }
        assert!(!rows.is_empty(), "the trades end before {end}");
        from = rows.last().unwrap()["a"].as_u64().unwrap() + 1;
    }
}

/// Every REST raw trade from id `from` with time before `end`, as CSV lines
/// (`historicalTrades` paged with `fromId`).
async fn rest_trade_lines(
    server: &SimServer,
    symbol: &str,
    mut from: u64,
    end: i64,
) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let page = get(
            server,
            &format!("/api/v3/historicalTrades?symbol={symbol}&fromId={from}&limit=1000"),
        )
        .await
        .json();
        let rows = page.as_array().unwrap();
        for r in rows {
            if r["time"].as_i64().unwrap() >= end {
                return lines;
            }
            let cells: Vec<String> = [
                "id",
                "price",
                "qty",
                "quoteQty",
                "time",
                "isBuyerMaker",
                "isBestMatch",
            ]
            .iter()
            .map(|k| cell(&r[*k]))
            .collect();
            lines.push(cells.join(","));
        }
        assert!(!rows.is_empty(), "the trades end before {end}");
        from = rows.last().unwrap()["id"].as_u64().unwrap() + 1;
    }
}

fn joined(lines: &[String]) -> String {
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

/// A REST ms time column turned into the µs archive form.
fn micros(cells: &mut [String], col: usize, close: bool) {
    let t: i64 = cells[col].parse().unwrap();
    cells[col] = if close {
        ((t + 1) * 1000 - 1).to_string()
    } else {
        (t * 1000).to_string()
    };
}

#[tokio::test]
async fn daily_klines_equal_rest_klines_in_ms_and_in_us_from_2025() {
    let server = start(SimConfig::default()).await;
    let csv = fetch_csv(&server, &daily_klines("BTCUSDT", "1m", "2024-01-01")).await;
    let rest = rest_kline_lines(&server, "BTCUSDT", "1m", JAN_1_2024, JAN_1_2024 + DAY).await;
    assert_eq!(rest.len(), 1440);
    assert_eq!(csv, joined(&rest), "byte for byte, ascending, no header");
    assert!(csv.starts_with(&format!("{JAN_1_2024},")));
    assert!(!csv.contains('\r'));

    // Another symbol and interval.
    let csv = fetch_csv(&server, &daily_klines("ETHBTC", "15m", "2024-06-30")).await;
    let start = 1_719_705_600_000; // 2024-06-30
    let rest = rest_kline_lines(&server, "ETHBTC", "15m", start, start + DAY).await;
    assert_eq!(rest.len(), 96);
    assert_eq!(csv, joined(&rest));

    // From 2025 on: open and close times in µs, the rest unchanged.
    let csv = fetch_csv(&server, &daily_klines("BTCUSDT", "1m", "2025-01-01")).await;
    let rest = rest_kline_lines(&server, "BTCUSDT", "1m", JAN_1_2025, JAN_1_2025 + DAY).await;
    let expect: Vec<String> = rest
        .iter()
        .map(|line| {
            let mut cells: Vec<String> = line.split(',').map(String::from).collect();
            micros(&mut cells, 0, false);
            micros(&mut cells, 6, true);
            cells.join(",")
        })
        .collect();
    assert_eq!(csv, joined(&expect));
    assert!(csv.starts_with("1735689600000000,"));
    let first: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert_eq!(first[6], "1735689659999999");
    assert_eq!(first.len(), 12);
    assert_eq!(first[11], "0");
    server.shutdown().await;
}

#[tokio::test]
async fn daily_trade_files_equal_rest_trades_with_holes_kept() {
    let probe = sparse().data();
    let day = 1_709_596_800_000; // 2024-03-05
    let hole_start = probe.first_id_at_or_after("BTCUSDT", day) + 100;
    let cfg = SimConfig {
        faults: Faults {
            missing_agg_ids: vec![(hole_start, hole_start + 4)],
            ..Faults::default()
        },
        ..sparse()
    };
    let server = start(cfg).await;

    let csv = fetch_csv(&server, &daily("aggTrades", "BTCUSDT", "2024-03-05")).await;
    let rest = rest_agg_lines(&server, "BTCUSDT", day, day + DAY).await;
    assert!(rest.len() > 1000, "{}", rest.len());
    assert_eq!(csv, joined(&rest));
    let ids: Vec<u64> = csv
        .lines()
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(!ids
        .iter()
        .any(|id| (hole_start..=hole_start + 4).contains(id)));
    assert!(ids.contains(&(hole_start - 1)) && ids.contains(&(hole_start + 5)));
    let makers: Vec<&str> = csv.lines().map(|l| l.split(',').nth(6).unwrap()).collect();
    assert!(makers.contains(&"True") && makers.contains(&"False"));
    assert!(csv.lines().all(|l| l.ends_with(",True")));

    let first_raw: u64 = csv
        .lines()
        .next()
        .unwrap()
        .split(',')
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    let csv = fetch_csv(&server, &daily("trades", "BTCUSDT", "2024-03-05")).await;
    let rest = rest_trade_lines(&server, "BTCUSDT", first_raw, day + DAY).await;
    assert!(rest.len() > 2000, "{}", rest.len());
    assert_eq!(csv, joined(&rest));
    let makers: Vec<&str> = csv.lines().map(|l| l.split(',').nth(5).unwrap()).collect();
    assert!(makers.contains(&"True") && makers.contains(&"False"));

    // From 2025 on the time column is in µs.
    let csv = fetch_csv(&server, &daily("aggTrades", "BTCUSDT", "2025-01-01")).await;
    let rest = rest_agg_lines(&server, "BTCUSDT", JAN_1_2025, JAN_1_2025 + DAY).await;
    let expect: Vec<String> = rest
        .iter()
        .map(|line| {
            let mut cells: Vec<String> = line.split(',').map(String::from).collect();
            micros(&mut cells, 5, false);
            cells.join(",")
        })
        .collect();
    assert_eq!(csv, joined(&expect));
    let csv = fetch_csv(&server, &daily("trades", "BTCUSDT", "2025-01-01")).await;
    let t: i64 = csv
        .lines()
        .next()
        .unwrap()
        .split(',')
        .nth(4)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (JAN_1_2025 * 1000..(JAN_1_2025 + DAY) * 1000).contains(&t),
        "{t}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn interval_rules_monthly_files_and_s3_not_found() {
    let server = start(sparse()).await;
    // One month candle in the monthly `1mo` file, equal to REST's 1M candle.
    let csv = fetch_csv(&server, &monthly_klines("BTCUSDT", "1mo", "2024-01")).await;
    let rest = rest_kline_lines(&server, "BTCUSDT", "1M", JAN_1_2024, JAN_1_2024 + 31 * DAY).await;
    assert_eq!(rest.len(), 1);
    assert_eq!(csv, joined(&rest));
    // Monthly files exist for every interval; weeks opened in the month.
    let csv = fetch_csv(&server, &monthly_klines("BTCUSDT", "1w", "2024-01")).await;
    assert_eq!(csv.lines().count(), 5);
    let csv = fetch_csv(&server, &monthly_klines("BTCUSDT", "1h", "2024-02")).await;
    assert_eq!(csv.lines().count(), 29 * 24);
    let feb = 1_706_745_600_000; // 2024-02-01
    assert_eq!(
        csv,
        joined(&rest_kline_lines(&server, "BTCUSDT", "1h", feb, feb + 29 * DAY).await)
    );

    let missing = [
        daily_klines("BTCUSDT", "1w", "2024-01-01"),
        daily_klines("BTCUSDT", "3d", "2024-01-01"),
        daily_klines("BTCUSDT", "1mo", "2024-01-01"),
        daily_klines("BTCUSDT", "1M", "2024-01-01"),
        monthly_klines("BTCUSDT", "1M", "2024-01"),
        daily_klines("NOTACOIN", "1m", "2024-01-01"),
        daily_klines("btcusdt", "1m", "2024-01-01"),
        daily_klines("BTCUSDT", "1m", "2024-02-30"),
        daily("aggTrades", "BTCXYZ", "2024-01-01"),
        "/data/spot/daily/klines/BTCUSDT/1m/".to_string(),
        // Futures exist, but have no 1-second candles.
        "/data/futures/um/daily/klines/BTCUSDT/1s/BTCUSDT-1s-2024-01-01.zip".to_string(),
        "/data/".to_string(),
    ];
    for path in &missing {
        let r = get(&server, path).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.header("content-type"), Some("application/xml"));
        assert!(r.header("x-mbx-used-weight").is_none());
        assert_eq!(
            r.text(),
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code>\
                 <Message>The specified key does not exist.</Message><Key>{}</Key></Error>",
                &path[1..]
            )
        );
        let r = get(&server, &format!("{path}.CHECKSUM")).await;
        assert_eq!(r.status, 404, "{path}.CHECKSUM");
    }
    // Archive requests are not REST requests: no weight, no x-mbx headers.
    let r = get(&server, &daily_klines("BTCUSDT", "1d", "2024-01-01")).await;
    assert_eq!(r.status, 200);
    assert!(r.headers.iter().all(|(k, _)| !k.starts_with("x-mbx")));
    let stats = server.stats();
    assert_eq!(
        stats.weight_total,
        stats
            .per_endpoint
            .get("/api/v3/klines")
            .copied()
            .unwrap_or(0)
            * 2
    );
    assert_eq!(stats.archive_not_found, 2 * missing.len() as u64);
    assert_eq!(stats.archive_requests, 4 + 2 * missing.len() as u64);
    assert!(!stats.per_endpoint.contains_key("other"));
    server.shutdown().await;
}

/// The `(hash, name, trailing newline)` of a CHECKSUM response.
fn parse_checksum(r: &Resp) -> (String, String, bool) {
    assert_eq!(r.status, 200);
    let text = r.text();
    let newline = text.ends_with('\n');
    let (hash, name) = text.trim_end_matches('\n').split_once("  ").unwrap();
    assert_eq!(hash.len(), 64);
    assert!(hash
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    (hash.to_string(), name.to_string(), newline)
}

#[tokio::test]
async fn checksums_match_the_zips_with_and_without_a_newline() {
    let server = start(sparse()).await;
    let files = [
        (daily_klines("BTCUSDT", "1m", "2024-01-01"), false),
        (daily_klines("BTCUSDT", "1m", "2024-01-02"), true),
        (daily("aggTrades", "ETHUSDT", "2024-01-02"), true),
        (daily("trades", "ETHUSDT", "2024-01-03"), false),
        (monthly_klines("BTCUSDT", "1d", "2024-01"), false),
        (monthly_klines("BTCUSDT", "1d", "2024-02"), true),
    ];
    for (path, newline) in &files {
        let zip = get(&server, path).await;
        assert_eq!(zip.status, 200);
        assert_eq!(zip.header("content-type"), Some("application/zip"));
        assert_eq!(zip.content_length(), zip.body.len());
        let r = get(&server, &format!("{path}.CHECKSUM")).await;
        let (hash, name, has_newline) = parse_checksum(&r);
        assert_eq!(hash, sha256_hex(&zip.body), "{path}");
        assert_eq!(name, path.rsplit('/').next().unwrap());
        assert_eq!(has_newline, *newline, "{path}");
        assert_eq!(r.body.len(), 64 + 2 + name.len() + usize::from(*newline));
        assert_eq!(
            zip.header("etag").unwrap(),
            format!("\"{}\"", sha256_hex(&zip.body))
        );
        assert!(zip.header("last-modified").unwrap().ends_with(" GMT"));
    }
    // Deterministic: another server generates the same bytes.
    let other = start(sparse()).await;
    let a = get(&server, &files[2].0).await.body;
    let b = get(&other, &files[2].0).await.body;
    assert_eq!(sha256_hex(&a), sha256_hex(&b));
    other.shutdown().await;
    server.shutdown().await;
}

/// The availability answers that depend on the clock, for `today` (ms of its midnight):
/// `(what, status, expected)`, asserted by the caller once it knows "today" did not change
/// while they were asked.
async fn clock_checks(server: &SimServer, today: i64) -> Vec<(&'static str, u16, u16)> {
    let day = |n: i64| daily_klines("BTCUSDT", "1h", &day_name(today - n * DAY));
    let this_month = day_name(today)[..7].to_string();
    let day_of_month: i64 = day_name(today)[8..].parse().unwrap();
    let last_month = day_name(today - day_of_month * DAY)[..7].to_string();
    server.set_archive_faults(ArchiveFaults::default());
    let mut out = vec![
        ("today", get(server, &day(0)).await.status, 404),
        ("tomorrow", get(server, &day(-1)).await.status, 404),
        ("yesterday", get(server, &day(1)).await.status, 200),
        (
            "yesterday's aggTrades",
            get(
                server,
                &daily("aggTrades", "BTCUSDT", &day_name(today - DAY)),
            )
            .await
            .status,
            200,
        ),
        // This month is not published yet; last month is.
        (
            "this month",
            get(server, &monthly_klines("BTCUSDT", "1d", &this_month))
                .await
                .status,
            404,
        ),
        (
            "last month",
            get(server, &monthly_klines("BTCUSDT", "1d", &last_month))
                .await
                .status,
            200,
        ),
    ];
    // A two-day publication delay.
    server.set_archive_faults(ArchiveFaults {
        daily_delay: Duration::from_millis(2 * DAY as u64),
        monthly_delay: Duration::from_millis(40 * DAY as u64),
        ..ArchiveFaults::default()
    });
    out.extend([
        ("delayed yesterday", get(server, &day(1)).await.status, 404),
        (
            "delayed yesterday's CHECKSUM",
            get(server, &format!("{}.CHECKSUM", day(1))).await.status,
            404,
        ),
        ("delayed day before", get(server, &day(2)).await.status, 404),
        (
            "delayed three days ago",
            get(server, &day(3)).await.status,
            200,
        ),
        (
            "delayed last month",
            get(server, &monthly_klines("BTCUSDT", "1d", &last_month))
                .await
                .status,
            404,
        ),
    ]);
    out
}

#[tokio::test]
async fn availability_follows_the_clock_the_delay_and_the_listing() {
    let server = start(sparse()).await;
    // The server's "today" is the test's: its clock is put at a chosen midday (a March day, so
    // last month is a short one), and no day boundary can pass while the checks run.
    let today = 1_773_705_600_000; // 2026-03-17
    server.clock().set_now_ms(today + 12 * 3_600_000);
    for (what, got, want) in clock_checks(&server, today).await {
        assert_eq!(got, want, "{what}");
    }
    server.shutdown().await;

    // Listed at noon on 2024-01-10: that day's file starts at the listing, earlier ones and
    // the months before don't exist.
    let listed = 1_704_888_000_000; // 2024-01-10T12:00:00Z
    let server = start(SimConfig {
        listed_at_ms: listed,
        ..sparse()
    })
    .await;
    assert_eq!(
        get(&server, &daily_klines("BTCUSDT", "1m", "2024-01-09"))
            .await
            .status,
        404
    );
    assert_eq!(
        get(&server, &daily("aggTrades", "BTCUSDT", "2024-01-09"))
            .await
            .status,
        404
    );
    assert_eq!(
        get(&server, &monthly_klines("BTCUSDT", "1h", "2023-12"))
            .await
            .status,
        404
    );
    let csv = fetch_csv(&server, &daily_klines("BTCUSDT", "1m", "2024-01-10")).await;
    assert_eq!(csv.lines().count(), 720);
    assert!(csv.starts_with(&format!("{listed},")));
    let csv = fetch_csv(&server, &daily("aggTrades", "BTCUSDT", "2024-01-10")).await;
    let first: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert_eq!(first[0], "0");
    assert!(first[5].parse::<i64>().unwrap() >= listed);
    let csv = fetch_csv(&server, &monthly_klines("BTCUSDT", "1h", "2024-01")).await;
    assert!(csv.starts_with(&format!("{listed},")));
    assert_eq!(csv.lines().count(), 21 * 24 + 12);
    server.shutdown().await;
}

#[tokio::test]
async fn missing_days_and_months_are_holes() {
    let server = start(SimConfig {
        archive: ArchiveFaults {
            missing_days: vec!["2024-01-02".into()],
            missing_months: vec!["2023-11".into()],
            ..ArchiveFaults::default()
        },
        ..sparse()
    })
    .await;
    for path in [
        daily_klines("BTCUSDT", "1m", "2024-01-02"),
        daily("aggTrades", "ETHUSDT", "2024-01-02"),
        daily("trades", "BNBUSDT", "2024-01-02"),
        monthly_klines("BTCUSDT", "1d", "2023-11"),
    ] {
        let r = get(&server, &path).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(r.text().contains("<Code>NoSuchKey</Code>"));
        assert_eq!(get(&server, &format!("{path}.CHECKSUM")).await.status, 404);
    }
    assert_eq!(
        get(&server, &daily_klines("BTCUSDT", "1m", "2024-01-03"))
            .await
            .status,
        200
    );
    assert_eq!(
        get(&server, &monthly_klines("BTCUSDT", "1d", "2023-12"))
            .await
            .status,
        200
    );
    // The monthly file of a month with a missing day is there.
    assert_eq!(
        get(&server, &monthly_klines("BTCUSDT", "1d", "2024-01"))
            .await
            .status,
        200
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_download_mismatches_then_a_retry_matches() {
    let name = "BTCUSDT-1m-2024-01-02.zip";
    let path = daily_klines("BTCUSDT", "1m", "2024-01-02");
    let server = start(SimConfig {
        archive: ArchiveFaults {
            corrupt: vec![(name.into(), 1)],
            ..ArchiveFaults::default()
        },
        ..sparse()
    })
    .await;
    let (hash, _, _) = parse_checksum(&get(&server, &format!("{path}.CHECKSUM")).await);
    let bad = get(&server, &path).await;
    assert_eq!(bad.status, 200);
    assert_eq!(bad.body.len(), bad.content_length());
    assert_ne!(
        sha256_hex(&bad.body),
        hash,
        "the first download is corrupted"
    );
    assert_eq!(server.archive_faults().corrupt, vec![(name.to_string(), 0)]);
    let good = get(&server, &path).await;
    assert_eq!(sha256_hex(&good.body), hash, "the retry is clean");
    assert_eq!(bad.body.len(), good.body.len());
    let flipped = bad
        .body
        .iter()
        .zip(&good.body)
        .filter(|(a, b)| a != b)
        .count();
    assert!((1..=3).contains(&flipped), "{flipped}");
    assert_eq!(server.stats().archive_downloads[name], 2);

    // Every download, through /sim/archive.
    let body = format!(r#"{{"corrupt":[["{name}",4294967295]]}}"#);
    let r = post(&server, "/sim/archive", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    for _ in 0..2 {
        assert_ne!(sha256_hex(&get(&server, &path).await.body), hash);
    }
    assert_eq!(server.archive_faults().corrupt[0].1, u32::MAX);
    server.set_archive_faults(ArchiveFaults::default());
    assert_eq!(sha256_hex(&get(&server, &path).await.body), hash);
    server.shutdown().await;
}

async fn post(server: &SimServer, path: &str, body: &str) -> Resp {
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    Resp {
        status: head.split(' ').nth(1).unwrap().parse().unwrap(),
        headers: Vec::new(),
        body: body.as_bytes().to_vec(),
    }
}

#[tokio::test]
async fn a_bad_checksum_states_a_wrong_hash_for_a_good_zip() {
    let path = daily("aggTrades", "BTCUSDT", "2024-01-04");
    let server = start(SimConfig {
        archive: ArchiveFaults {
            bad_checksum: vec!["BTCUSDT-aggTrades-2024-01-04.zip".into()],
            ..ArchiveFaults::default()
        },
        ..sparse()
    })
    .await;
    let zip = get(&server, &path).await;
    let (stated, name, _) = parse_checksum(&get(&server, &format!("{path}.CHECKSUM")).await);
    assert_eq!(name, "BTCUSDT-aggTrades-2024-01-04.zip");
    assert_ne!(stated, sha256_hex(&zip.body));
    // The zip itself is fine.
    let csv = csv_of(&zip.body, "BTCUSDT-aggTrades-2024-01-04");
    assert_eq!(csv.lines().count(), 1440);
    // Other files are unaffected; clearing the fault fixes it.
    let other = daily("aggTrades", "BTCUSDT", "2024-01-05");
    let (h, _, _) = parse_checksum(&get(&server, &format!("{other}.CHECKSUM")).await);
    assert_eq!(h, sha256_hex(&get(&server, &other).await.body));
    server.set_archive_faults(ArchiveFaults::default());
    let (fixed, _, _) = parse_checksum(&get(&server, &format!("{path}.CHECKSUM")).await);
    assert_eq!(fixed, sha256_hex(&zip.body));
    server.shutdown().await;
}

#[tokio::test]
async fn a_truncated_download_is_completed_with_a_range_request() {
    let name = "ETHUSDT-trades-2024-01-06.zip";
    let path = daily("trades", "ETHUSDT", "2024-01-06");
    let server = start(SimConfig {
        archive: ArchiveFaults {
            truncate: vec![(name.into(), 1)],
            ..ArchiveFaults::default()
        },
        ..sparse()
    })
    .await;
    let (hash, _, _) = parse_checksum(&get(&server, &format!("{path}.CHECKSUM")).await);
    let cut = get(&server, &path).await;
    assert_eq!(cut.status, 200);
    let full_len = cut.content_length();
    assert!(
        !cut.body.is_empty() && cut.body.len() < full_len,
        "{} of {full_len}",
        cut.body.len()
    );
    assert_eq!(cut.body.len(), full_len / 2, "about half");
    let have = cut.body.len();
    let rest = request(
        server.local_addr(),
        "GET",
        &path,
        &[("Range", &format!("bytes={have}-"))],
    )
    .await;
    assert_eq!(rest.status, 206);
    assert_eq!(
        rest.header("content-range").unwrap(),
        format!("bytes {have}-{}/{full_len}", full_len - 1)
    );
    assert_eq!(rest.content_length(), full_len - have);
    let mut whole = cut.body.clone();
    whole.extend_from_slice(&rest.body);
    assert_eq!(sha256_hex(&whole), hash);
    assert_eq!(server.stats().archive_downloads[name], 2);

    // Truncating every download: a plain retry keeps failing.
    server.set_archive_faults(ArchiveFaults {
        truncate: vec![(name.into(), u32::MAX)],
        ..ArchiveFaults::default()
    });
    for _ in 0..2 {
        let r = get(&server, &path).await;
        assert!(r.body.len() < r.content_length());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn duplicate_rows_nested_copies_and_headers_are_published_consistently() {
    let stem = "BTCUSDT-1m-2024-01-07";
    let path = daily_klines("BTCUSDT", "1m", "2024-01-07");
    let server = start(sparse()).await;
    let clean = get(&server, &path).await;
    let clean_csv = csv_of(&clean.body, stem);
    let clean_lines: Vec<&str> = clean_csv.lines().collect();

    let check_sum = |zip: &Resp, r: &Resp| {
        let (h, _, _) = parse_checksum(r);
        assert_eq!(h, sha256_hex(&zip.body));
    };

    server.set_archive_faults(ArchiveFaults {
        duplicate_rows: vec![format!("{stem}.zip")],
        ..ArchiveFaults::default()
    });
    let dup = get(&server, &path).await;
    check_sum(&dup, &get(&server, &format!("{path}.CHECKSUM")).await);
    let dup_csv = csv_of(&dup.body, stem);
    let lines: Vec<&str> = dup_csv.lines().collect();
    assert_eq!(lines.len(), 1440 + 2);
    assert_eq!(lines[999], lines[1000]);
    assert_eq!(lines[1440], lines[1441]);
    let mut dedup = lines.clone();
    dedup.dedup();
    assert_eq!(dedup, clean_lines);

    server.set_archive_faults(ArchiveFaults {
        nested_copy: vec![format!("{stem}.zip")],
        ..ArchiveFaults::default()
    });
    let nested = get(&server, &path).await;
    check_sum(&nested, &get(&server, &format!("{path}.CHECKSUM")).await);
    let entries = unzip(&nested.body);
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        vec![format!("{stem}.csv"), format!("{stem}/{stem}.csv")]
    );
    assert_eq!(entries[0].1, clean_csv);
    assert_eq!(entries[1].1, clean_csv);

    let r = post(
        &server,
        "/sim/archive",
        r#"{"nested_copy":[],"header":true}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let headed = get(&server, &path).await;
    check_sum(&headed, &get(&server, &format!("{path}.CHECKSUM")).await);
    let csv = csv_of(&headed.body, stem);
    let (header, body) = csv.split_once('\n').unwrap();
    assert_eq!(
        header,
        "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,\
         taker_buy_quote_volume,ignore"
    );
    assert_eq!(body, clean_csv);
    let agg = fetch_csv(&server, &daily("aggTrades", "BTCUSDT", "2024-01-07")).await;
    assert!(agg.starts_with(
        "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker,\
         is_best_match\n"
    ));
    let trades = fetch_csv(&server, &daily("trades", "BTCUSDT", "2024-01-07")).await;
    assert!(trades.starts_with("id,price,qty,quote_qty,time,is_buyer_maker,is_best_match\n"));

    // Clearing the faults serves the clean file again, from the cache.
    let generated = server.stats().archive_files_generated;
    server.set_archive_faults(ArchiveFaults::default());
    let again = get(&server, &path).await;
    assert_eq!(again.body, clean.body);
    assert_eq!(server.stats().archive_files_generated, generated);
    server.shutdown().await;
}

#[tokio::test]
async fn sim_archive_reads_and_partly_updates_the_faults() {
    let server = start(sparse()).await;
    let v = get(&server, "/sim/archive").await.json();
    assert_eq!(
        v,
        serde_json::json!({
            "daily_delay_ms": 0, "monthly_delay_ms": 0, "missing_days": [], "missing_months": [],
            "corrupt": [], "bad_checksum": [], "truncate": [], "duplicate_rows": [],
            "missing_rows": [], "nested_copy": [], "header": false, "latency_ms": 0, "bandwidth": 0
        })
    );
    let r = post(
        &server,
        "/sim/archive",
        r#"{"daily_delay_ms":3600000,"missing_days":["2024-01-02"],"truncate":[["X.zip",2]],"missing_rows":["Y.zip"]}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post(&server, "/sim/archive", r#"{"latency_ms":5}"#).await;
    let v = r.json();
    assert_eq!(v["daily_delay_ms"], 3_600_000);
    assert_eq!(v["missing_days"][0], "2024-01-02");
    assert_eq!(v["truncate"], serde_json::json!([["X.zip", 2]]));
    assert_eq!(v["missing_rows"], serde_json::json!(["Y.zip"]));
    assert_eq!(v["latency_ms"], 5);
    let f = server.archive_faults();
    assert_eq!(f.daily_delay, Duration::from_secs(3600));
    assert_eq!(f.latency, Duration::from_millis(5));
    for bad in [
        r#"{"missing_days":["2024-1-2"]}"#,
        r#"{"missing_months":["2024-13"]}"#,
        r#"{"unknown":1}"#,
        r#"{"corrupt":[["X.zip"]]}"#,
    ] {
        let r = post(&server, "/sim/archive", bad).await;
        assert_eq!(r.status, 400, "{bad}");
    }
    assert_eq!(server.archive_faults(), f, "refused updates change nothing");
    server.shutdown().await;
}

#[tokio::test]
async fn head_and_ranges() {
    let path = daily_klines("BNBUSDT", "5m", "2024-01-08");
    let server = start(sparse()).await;
    let head = request(server.local_addr(), "HEAD", &path, &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let full = get(&server, &path).await;
    let len = full.body.len();
    assert_eq!(head.content_length(), len);
    assert_eq!(head.header("accept-ranges"), Some("bytes"));
    assert_eq!(head.header("etag"), full.header("etag"));
    let head = request(
        server.local_addr(),
        "HEAD",
        &format!("{path}.CHECKSUM"),
        &[],
    )
    .await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(
        head.content_length(),
        64 + 2 + "BNBUSDT-5m-2024-01-08.zip".len() + 1
    );
    let head = request(
        server.local_addr(),
        "HEAD",
        &daily_klines("BNBUSDT", "5m", "2099-01-08"),
        &[],
    )
    .await;
    assert_eq!((head.status, head.body.len()), (404, 0));

    let range = |spec: String| {
        let path = path.clone();
        let addr = server.local_addr();
        async move { request(addr, "GET", &path, &[("Range", &spec)]).await }
    };
    let r = range("bytes=10-99".into()).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, full.body[10..100]);
    assert_eq!(
        r.header("content-range"),
        Some(&*format!("bytes 10-99/{len}"))
    );
    assert_eq!(r.content_length(), 90);
    let r = range(format!("bytes={}-", len - 5)).await;
    assert_eq!((r.status, &r.body[..]), (206, &full.body[len - 5..]));
    let r = range("bytes=-7".into()).await;
    assert_eq!((r.status, &r.body[..]), (206, &full.body[len - 7..]));
    let r = range(format!("bytes=100-{}", len * 2)).await;
    assert_eq!((r.status, &r.body[..]), (206, &full.body[100..]));
    let r = range(format!("bytes={len}-")).await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some(&*format!("bytes */{len}")));
    assert!(r.text().contains("<Code>InvalidRange</Code>"));
    let r = range("bytes=0-1,5-9".into()).await;
    assert_eq!(
        (r.status, r.body.len()),
        (200, len),
        "multiple ranges: the whole file"
    );
    let head = request(
        server.local_addr(),
        "HEAD",
        &path,
        &[("Range", "bytes=0-9")],
    )
    .await;
    assert_eq!((head.status, head.content_length()), (206, 10));
    let r = request(server.local_addr(), "POST", &path, &[]).await;
    assert_eq!(r.status, 405);
    let stats = server.stats();
    assert_eq!(stats.archive_downloads["BNBUSDT-5m-2024-01-08.zip"], 6);
    assert_eq!(stats.requests, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn concurrent_requests_generate_a_file_once_and_shutdown_removes_the_cache() {
    let path = daily("aggTrades", "SOLUSDT", "2024-01-09");
    let server = start(SimConfig {
        agg_trade_spacing_ms: 5_000,
        ..SimConfig::default()
    })
    .await;
    assert!(server.archive_cache_dir().is_none());
    let addr = server.local_addr();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let path = if i % 2 == 0 {
            path.clone()
        } else {
            format!("{path}.CHECKSUM")
        };
        tasks.push(tokio::spawn(async move {
            request(addr, "GET", &path, &[]).await
        }));
    }
    let mut zips = Vec::new();
    let mut sums = Vec::new();
    let mut sent = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200);
        sent += r.body.len() as u64;
        if i % 2 == 0 {
            zips.push(r.body);
        } else {
            sums.push(parse_checksum(&r).0);
        }
    }
    assert!(zips.iter().all(|z| *z == zips[0]));
    assert!(sums.iter().all(|s| *s == sha256_hex(&zips[0])));
    let stats = server.stats();
    assert_eq!(stats.archive_files_generated, 1);
    assert_eq!(stats.archive_requests, 6);
    assert_eq!(stats.archive_bytes_sent, sent);
    let dir = server.archive_cache_dir().expect("a cache directory");
    assert!(dir.is_dir());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    server.shutdown().await;
    assert!(!dir.exists(), "the cache is removed on shutdown");

    // Dropping the server removes it too.
    let server = start(sparse()).await;
    assert_eq!(get(&server, &path).await.status, 200);
    let dir = server.archive_cache_dir().unwrap();
    drop(server);
    assert!(!dir.exists());
}

#[tokio::test]
async fn latency_and_bandwidth_slow_archive_responses() {
    let path = daily_klines("BTCUSDT", "1m", "2024-01-11");
    let server = start(sparse()).await;
    let len = get(&server, &path).await.body.len() as u64;
    server.set_archive_faults(ArchiveFaults {
        latency: Duration::from_millis(300),
        ..ArchiveFaults::default()
    });
    let t = Instant::now();
    assert_eq!(get(&server, &format!("{path}.CHECKSUM")).await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    // About half a second at this bandwidth.
    server.set_archive_faults(ArchiveFaults {
        bandwidth: len * 2,
        ..ArchiveFaults::default()
    });
    let t = Instant::now();
    let r = get(&server, &path).await;
    assert_eq!(r.body.len() as u64, len);
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    server.shutdown().await;
}

#[test]
fn day_names() {
    assert_eq!(day_name(JAN_1_2024), "2024-01-01");
    assert_eq!(day_name(JAN_1_2025 - 1), "2024-12-31");
    assert_eq!(day_name(1_709_164_800_000), "2024-02-29");
}
