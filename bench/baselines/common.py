"""Shared by the Python baselines: command line, kline pagination and the record JSON.

The record is byte-for-byte the loader's (same fields, same order, compact separators), keyed by
the symbol, so `loader-producer verify` checks a baseline's topic exactly like the loader's.
"""

import argparse
import json
import sys
from datetime import datetime, timezone

INTERVAL_MS = {"1s": 1_000, "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000,
               "30m": 1_800_000, "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000,
               "6h": 21_600_000, "8h": 28_800_000, "12h": 43_200_000, "1d": 86_400_000}
PAGE = 1000


def parse_day(s: str) -> int:
    """YYYY-MM-DD (UTC midnight) or epoch milliseconds."""
    if s.isdigit():
        return int(s)
    d = datetime.strptime(s, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    return int(d.timestamp() * 1000)


def args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--api-url", required=True, help="Binance REST base URL (the simulator)")
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    p.add_argument("--topic", required=True)
    p.add_argument("--symbol", default="BTCUSDT")
    p.add_argument("--interval", default="1m")
    p.add_argument("--time-range", required=True, help="START:END, YYYY-MM-DD or epoch ms, [start, end)")
    p.add_argument("--fetch-workers", type=int, default=8, help="tuned baseline only: pages fetched at once")
    a = p.parse_args()
    start, end = a.time_range.split(":")
    a.start_ms, a.end_ms = parse_day(start), parse_day(end)
    a.step_ms = INTERVAL_MS[a.interval]
    return a


def windows(a: argparse.Namespace):
    """[startTime, endTime] of each kline page, one page of 1000 candles each, like the loader."""
    t = a.start_ms
    while t < a.end_ms:
        e = min(t + PAGE * a.step_ms, a.end_ms)
        yield t, e - 1
        t = e


def fetch_page(session, a: argparse.Namespace, start: int, end: int) -> list:
    r = session.get(f"{a.api_url}/api/v3/klines", params={
        "symbol": a.symbol, "interval": a.interval, "startTime": start, "endTime": end, "limit": PAGE,
    }, timeout=30)
    r.raise_for_status()
    return r.json()


def record(symbol: str, interval: str, k: list) -> bytes:
    """The loader's candle record (`KlineRecord`), serialised the same way."""
    return json.dumps({
        "_key": f"{symbol}_{interval}_{k[0]}",
        "symbol": symbol,
        "interval": interval,
        "timestamp": k[0],
        "open_time": k[0],
        "open": k[1],
        "high": k[2],
        "low": k[3],
        "close": k[4],
        "volume": k[5],
        "close_time": k[6],
        "quote_asset_volume": k[7],
        "number_of_trades": k[8],
        "taker_buy_base_asset_volume": k[9],
        "taker_buy_quote_asset_volume": k[10],
    }, separators=(",", ":")).encode()


def report(**fields) -> None:
    print(json.dumps(fields), flush=True)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)
