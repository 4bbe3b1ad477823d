"""Baseline in the style of the platform's original Python loader: fetch one page of klines, then
publish its records one at a time, waiting for each record's acknowledgement before sending the
next (confluent-kafka's produce() followed by flush(), which is what awaiting every send means),
then fetch the next page.

Prints one JSON line: records, bytes, seconds (first request to last acknowledgement), records/s.
"""

import time

import requests
from confluent_kafka import Producer

from common import args, fail, fetch_page, record, report, windows


def main() -> None:
    a = args(__doc__)
    # The original loader's producer: acks=all, everything else left at the client's defaults.
    producer = Producer({"bootstrap.servers": a.bootstrap, "acks": "all", "client.id": "original-baseline"})
    failures = []

    def on_delivery(err, _msg):
        if err is not None:
            failures.append(err)

    session = requests.Session()
    records = size = 0
    started = time.perf_counter()
    for start, end in windows(a):
        for k in fetch_page(session, a, start, end):
            value = record(a.symbol, a.interval, k)
            producer.produce(a.topic, value=value, key=a.symbol.encode(), on_delivery=on_delivery)
            if producer.flush(30) != 0 or failures:
                fail(f"record {records} was not acknowledged: {failures[:1]}")
            records += 1
            size += len(value)
    seconds = time.perf_counter() - started
    report(contestant="original", records=records, bytes=size, seconds=seconds,
           records_per_s=records / max(seconds, 1e-9))


if __name__ == "__main__":
    main()
