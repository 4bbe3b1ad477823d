"""A tuned Python baseline: pages fetched by a pool of threads (in order), every record produced
asynchronously to one confluent-kafka producer with the loader's settings (idempotent, acks=all,
lz4, 20 ms linger, large batches), delivery reports served by poll(0), one flush at the end.

Prints one JSON line: records, bytes, seconds (first request to last acknowledgement), records/s.
"""

import itertools
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from confluent_kafka import Producer

from common import args, fail, fetch_page, record, report, windows

# The loader's producer settings (src/sink.rs `producer_config`).
SETTINGS = {
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "lz4",
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "batch.num.messages": 10_000,
    "queue.buffering.max.messages": 100_000,
    "queue.buffering.max.kbytes": 32_768,
    "message.timeout.ms": 120_000,
}


def main() -> None:
    a = args(__doc__)
    producer = Producer({"bootstrap.servers": a.bootstrap, "client.id": "tuned-baseline", **SETTINGS})
    acked = [0]
    failures = []

    def on_delivery(err, _msg):
        if err is None:
            acked[0] += 1
        else:
            failures.append(err)

    sessions = {}

    def fetch(window):
        import threading
        s = sessions.setdefault(threading.get_ident(), requests.Session())
        return fetch_page(s, a, *window)

    key = a.symbol.encode()
    records = size = 0
    started = time.perf_counter()
    with ThreadPoolExecutor(a.fetch_workers) as pool:
        it = iter(windows(a))
        # Bounded read-ahead: at most 2 x workers pages fetched but not yet published.
        pending = [pool.submit(fetch, w) for w in itertools.islice(it, 2 * a.fetch_workers)]
        while pending:
            rows = pending.pop(0).result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(fetch, nxt))
            for k in rows:
                value = record(a.symbol, a.interval, k)
                while True:
                    try:
                        producer.produce(a.topic, value=value, key=key, on_delivery=on_delivery)
                        break
                    except BufferError:
                        producer.poll(0.001)  # queue full: serve deliveries, then retry
                producer.poll(0)
                records += 1
                size += len(value)
            if failures:
                fail(f"delivery failed: {failures[:1]}")
    left = producer.flush(120)
    seconds = time.perf_counter() - started
    if left or failures or acked[0] != records:
        fail(f"{acked[0]} of {records} records acknowledged, {len(failures)} failed")
    report(contestant="tuned", records=records, bytes=size, seconds=seconds,
           records_per_s=records / max(seconds, 1e-9))


if __name__ == "__main__":
    main()
