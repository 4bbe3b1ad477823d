#!/usr/bin/env python3
"""The benchmark driver behind `bench/run`: starts brokers and exchange simulators, runs every
scenario with its contestants alternating, checks every run, and writes the markdown table.

It expects what `bench/run` prepares: release binaries in target/release (the loader, the
simulator and the `ceiling` example), the nisshi broker (NISSHI_BIN) and this venv's
confluent-kafka. Every run gets its own broker and simulator, started here and stopped right
after, so no run inherits another's topics, memory or rate-limit window.

Exit status: 0 when every contestant ran and every check passed (whether or not targets are met),
1 when a contestant crashed, timed out, or a record count or `verify` failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import itertools
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RELEASE = (ROOT / os.environ.get("CARGO_TARGET_DIR", "target")) / "release"
LOADER = RELEASE / "loader-producer"
SIM = RELEASE / "exchange-sim"
CEILING = RELEASE / "examples" / "ceiling"
PYTHON = sys.executable
TIME = "/usr/bin/time"
# Instruction counts (scenarios 1 and 6): callgrind counts what a process executes, the same on a busy
# machine as on an idle one, where seconds are not. Optional: without valgrind the line says so.
VALGRIND = shutil.which("valgrind")
DAY_MS = 86_400_000
# deploy/k8s/base/job.yaml's memory request: what scenario 10's many-symbol jobs must stay under.
MANIFEST_MEMORY_REQUEST_MB = 128

# The loader's own variables: never inherited from the caller's environment.
LOADER_VARS = {
    "QUEUE_ID", "SYMBOL", "TYPE", "INTERVAL", "TIME_RANGE", "KAFKA_TOPIC", "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_USER_PRODUCER", "KAFKA_USER", "KAFKA_PASSWORD_PRODUCER", "KAFKA_PASSWORD", "CA_PATH",
    "KAFKA_CA_PATH", "KAFKA_PRODUCER_CONFIG", "KAFKA_CONNECT_TIMEOUT", "KAFKA_TOPIC_PARTITIONS",
    "KAFKA_MESSAGE_KEY", "TELEMETRY_PRODUCER_ID", "QUEUE_CONTROL_TOPIC", "CONTROL_TOPIC",
    "QUEUE_EVENTS_TOPIC", "TELEMETRY_TOPIC", "TELEMETRY_INTERVAL", "BINANCE_API_URL", "BINANCE_WS_URL",
    "BINANCE_API_KEY", "BINANCE_API_SECRET", "RATE_LIMIT_SHARE", "FETCH_CONCURRENCY", "PAGE_LIMIT",
    "LIMIT", "MAX_RETRIES", "MAX_RETRY_AFTER", "REQUEST_TIMEOUT", "DEBUG", "METRICS_PORT",
    "KAFKA_USER_CONSUMER", "KAFKA_PASSWORD_CONSUMER", "RUST_LOG", "SOURCE", "ARCHIVE_URL",
    "ARCHIVE_CONCURRENCY", "ARCHIVE_DIR", "RESUME", "SHARD_COUNT", "JOB_COMPLETION_INDEX",
    "ALLOW_INSECURE_URLS",
}

SUMMARY_RE = re.compile(
    r"Loaded and published (?P<records>\d+) records .* in (?P<seconds>[\d.]+) s "
    r"\((?P<rate>[\d.]+) records/s; (?P<requests>\d+) requests, weight (?P<weight>\d+), "
    r"(?P<r429>\d+) x 429, (?P<r418>\d+) x 418\)"
)


# ------------------------------------------------------------------------------------------------
# Processes


class BenchError(Exception):
    """A contestant crashed or a check failed: recorded, and the exit status becomes 1."""


_children: list[subprocess.Popen] = []


def _stop(p: subprocess.Popen, grace: float = 5.0) -> None:
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)  # its own session: the process and its helpers only
    except ProcessLookupError:
        return
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def cleanup() -> None:
    while _children:
        _stop(_children.pop())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Broker:
    """A memory-storage nisshi on a free loopback port, with the platform's queue topics."""

    def __init__(self, logs: Path):
        self.port = free_port()
        state = logs / "nisshi"
        state.mkdir(parents=True, exist_ok=True)
        self.bootstrap = f"127.0.0.1:{self.port}"
        url = f"tcp://{self.bootstrap}"
        # cwd is a state directory: nisshi reads a .env file from its working directory.
        self.proc = subprocess.Popen(
            [os.environ["NISSHI_BIN"], "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://nisshi/"],
            cwd=state, stdin=subprocess.DEVNULL, stdout=open(state / f"broker-{self.port}.log", "wb"),
            stderr=subprocess.STDOUT, start_new_session=True)
        _children.append(self.proc)
        deadline = time.time() + 30
        while not port_open(self.port):
            if self.proc.poll() is not None or time.time() > deadline:
                raise BenchError(f"nisshi did not start on {self.bootstrap}")
            time.sleep(0.05)
        # A deployed platform has its control and events topics; without them the loader's
        # control listener waits for the control topic before starting.
        create_topics(self.bootstrap, ["queue-control", "queue-events"])

    def stop(self) -> None:
        _stop(self.proc)
        if self.proc in _children:
            _children.remove(self.proc)


def create_topics(bootstrap: str, names: list[str]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4})  # no info-level chatter
    for name, fut in admin.create_topics([NewTopic(n, 1, 1) for n in names], request_timeout=15).items():
        try:
            fut.result(20)
        except Exception as e:  # noqa: BLE001 - already existing is fine
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise BenchError(f"cannot create topic {name}: {e}") from e


class Simulator:
    """An exchange-sim on a free loopback port."""

    def __init__(self, logs: Path, *flags: str):
        self.flags = list(flags)
        self.proc = subprocess.Popen(
            [str(SIM), "--listen", "127.0.0.1:0", *flags], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=open(logs / "exchange-sim.log", "ab"), start_new_session=True,
            text=True)
        _children.append(self.proc)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on (http://\S+)", line)
        if not m:
            raise BenchError(f"exchange-sim did not start: {line!r}")
        self.url = m.group(1)

    def stats(self) -> dict:
        u = urllib.parse.urlparse(self.url)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        try:
            c.request("GET", "/sim/stats")
            return json.loads(c.getresponse().read())
        finally:
            c.close()

    def stop(self) -> None:
        _stop(self.proc)
        if self.proc in _children:
            _children.remove(self.proc)


class WeightTimeline(threading.Thread):
    """Polls the simulator's weight counter (GET /sim/stats costs no weight) to split the weight
    a run spent into the simulator's fixed windows."""

    def __init__(self, sim: Simulator, every_s: float = 0.01):
        super().__init__(daemon=True)
        self.sim, self.every_s = sim, every_s
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        u = urllib.parse.urlparse(self.sim.url)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        while not self._halt.is_set():
            try:
                c.request("GET", "/sim/stats")
                w = json.loads(c.getresponse().read())["weight_total"]
                self.samples.append((time.time(), w))
            except (OSError, http.client.HTTPException, ValueError):
                c.close()
                c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
            self._halt.wait(self.every_s)
        c.close()

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def per_window(self, window_ms: int) -> list[tuple[int, int]]:
        """[(window start ms, weight)] from the first window with weight to the last, each
        increment counted in the window of the sample that first showed it."""
        weights: dict[int, int] = {}
        prev = 0
        for t, w in self.samples:
            if w > prev:
                ms = int(t * 1000)
                win = ms - ms % window_ms
                weights[win] = weights.get(win, 0) + (w - prev)
                prev = w
        if not weights:
            return []
        first, last = min(weights), max(weights)
        return [(win, weights.get(win, 0)) for win in range(first, last + window_ms, window_ms)]


@dataclass
class Run:
    """One contestant process, timed by /usr/bin/time."""
    wall: float
    rss_kb: int
    cpu: float
    rc: int
    stdout: str
    stderr: str


def run_timed(name: str, cmd: list[str], env: dict, logs: Path, timeout: float) -> Run:
    tfile = logs / f"{name}.time"
    p = subprocess.Popen([TIME, "-f", "%e %M %U %S", "-o", str(tfile), *cmd], env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True, text=True)
    _children.append(p)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(p, grace=2)
        out, err = p.communicate()
        (logs / f"{name}.out").write_text(out)
        (logs / f"{name}.err").write_text(err)
        raise BenchError(f"{name}: no result after {timeout:.0f} s (killed)")
    finally:
        if p in _children:
            _children.remove(p)
    (logs / f"{name}.out").write_text(out)
    (logs / f"{name}.err").write_text(err)
    fields = tfile.read_text().strip().splitlines()[-1].split()
    wall, rss, user, sys_ = float(fields[0]), int(fields[1]), float(fields[2]), float(fields[3])
    run = Run(wall, rss, user + sys_, p.returncode, out, err)
    if p.returncode != 0:
        tail = "\n".join(err.strip().splitlines()[-5:])
        raise BenchError(f"{name}: exit code {p.returncode}: {tail}")
    return run


_help: str | None = None


def loader_default(var: str) -> str:
    """The loader's default for `var`, as its --help states it."""
    global _help
    if _help is None:
        _help = subprocess.run([str(LOADER), "--help"], capture_output=True, text=True, env=base_env()).stdout
    m = re.search(r"\[env: " + re.escape(var) + r"=[^\]]*\]\s*\[default: ([^\]]+)\]", _help)
    return m.group(1) if m else "?"


def base_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in LOADER_VARS}
    env["NO_COLOR"] = "1"
    return env


@dataclass
class LoaderResult:
    records: int
    seconds: float  # the summary line's: from connecting to Binance to the last acknowledgement
    rate: float
    requests: int
    weight: int
    r429: int
    r418: int
    wall: float  # the whole process, startup and Kafka connection included
    rss_kb: int
    cpu: float


def callgrind(out_file: Path) -> list[str]:
    """The command prefix that counts a process's instructions, every thread's, into `out_file`."""
    return [str(VALGRIND), "--tool=callgrind", f"--callgrind-out-file={out_file}"]


def callgrind_total(out_file: Path) -> int:
    m = re.search(r"^(?:summary|totals): (\d+)", out_file.read_text(), re.M)
    if not m:
        raise BenchError(f"no instruction total in {out_file}")
    return int(m.group(1))


def callgrind_functions(out_file: Path) -> dict[str, int]:
    """Instructions by function (inlined code counted where it was inlined), from callgrind_annotate."""
    p = subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=no", str(out_file)],
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise BenchError(f"callgrind_annotate failed on {out_file}: {p.stderr.strip()[-300:]}")
    fns: dict[str, int] = {}
    for line in p.stdout.splitlines():
        m = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(.*)$", line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        where, obj = m.group(2), ""
        o = re.search(r" \[([^\]]*)\]$", where)
        if o:
            where, obj = where[:o.start()], Path(o.group(1)).name
        fn = where.split(":", 1)[1] if ":" in where else where
        if fn.startswith("0x"):
            fn = f"{obj} (no symbols)"
        fns[fn] = fns.get(fn, 0) + int(m.group(1).replace(",", ""))
    return fns


def short_fn(fn: str, width: int = 90) -> str:
    """A function's name fit for a markdown table cell: no backticks or pipes, at most `width` long."""
    fn = fn.replace("`", "'").replace("|", "/")
    return fn if len(fn) <= width else fn[:width - 1] + "…"


@dataclass
class InstructionCount:
    """Callgrind runs of one contestant over a smaller and a larger range."""
    runs: list[tuple[int, int]]  # (instructions, records) per range
    small: Path
    large: Path

    def marginal(self) -> float:
        (i1, n1), (i2, n2) = self.runs
        return (i2 - i1) / (n2 - n1)

    def startup(self) -> float:
        i1, n1 = self.runs[0]
        return i1 - self.marginal() * n1

    def by_function(self) -> dict[str, float]:
        """Each function's instructions a further record (the two runs' difference)."""
        (_, n1), (_, n2) = self.runs
        a, b = callgrind_functions(self.small), callgrind_functions(self.large)
        return {f: (b.get(f, 0) - a.get(f, 0)) / (n2 - n1) for f in set(a) | set(b)}


def instruction_text(label: str, ic: dict[str, InstructionCount]) -> tuple[str, list[list[str]]]:
    """One sentence for `label` (loader against ceiling) and the rows of the loader's breakdown."""
    c, l = ic["ceiling"], ic["loader"]
    (l1, ln1), _ = l.runs
    (c1, cn1), _ = c.runs
    line = (f"{label}: one small run, whole process, loader {l1 / ln1:,.0f} and ceiling {c1 / cn1:,.0f} "
            f"({(l1 / ln1) / (c1 / cn1):.2f}×); each further record, loader {l.marginal():,.0f} and ceiling "
            f"{c.marginal():,.0f} (**{l.marginal() / c.marginal():.2f}×**); startup, loader {l.startup() / 1e6:,.0f} M "
            f"and ceiling {c.startup() / 1e6:,.0f} M")
    lf, cf = l.by_function(), c.by_function()
    top = sorted(lf, key=lambda f: -lf[f])[:10]
    rows = [[label, f"`{short_fn(f)}`", f"{lf[f]:,.0f}", f"{cf[f]:,.0f}" if cf.get(f, 0) >= 1 else ""] for f in top]
    return line, rows


def instruction_section_text(ranges: str, lines: list[str], rows: list[list[str]]) -> list[str]:
    if not VALGRIND:
        return ["Instructions a record: not counted (valgrind is not installed)."]
    return [
        f"Instructions a record (user space, every thread), counted by valgrind's callgrind over {ranges}, "
        "one run each: the same on a busy machine as on an idle one, so they compare "
        "runs and commits where seconds cannot. A further record's cost is the difference of the two runs divided "
        "by the difference of their records; startup is the rest. Under valgrind the CPU has no SHA extensions, so "
        "the archive's sha256 costs several times what it costs natively; kernel work (sockets, files) is not "
        "counted. " + ("; ".join(lines) + "." if lines else "None: a run failed (see above)."),
        "",
        *([
            "Where a further record's instructions go in the loader (the ten functions that cost most, "
            "self cost with what was inlined into them, the two runs' difference per record) and what the "
            "ceiling spends in the same function:",
            "",
            table(["path", "function", "loader", "ceiling"], rows),
        ] if rows else []),
    ]


def run_loader(name: str, logs: Path, broker: Broker, sim: Simulator, topic: str, dtype: str,
               time_range: str, expected: int | None, timeout: float, wrap: list[str] | None = None,
               **extra: str) -> LoaderResult:
    env = base_env()
    env.update({
        "SYMBOL": "BTCUSDT", "TYPE": dtype, "TIME_RANGE": time_range, "KAFKA_TOPIC": topic,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "BINANCE_API_URL": sim.url, "METRICS_PORT": "0",
        # The REST scenarios measure REST; the archive scenario says SOURCE itself.
        "SOURCE": "rest", "ARCHIVE_URL": sim.url,
    })
    env.update(extra)
    r = run_timed(name, [*(wrap or []), str(LOADER)], env, logs, timeout)
    m = SUMMARY_RE.search(r.stdout)
    if not m:
        raise BenchError(f"{name}: no summary line in the loader's output: {r.stdout.strip()[-300:]!r}")
    g = {k: float(v) if k in ("seconds", "rate") else int(v) for k, v in m.groupdict().items()}
    if expected is not None and g["records"] != expected:
        raise BenchError(f"{name}: the loader published {g['records']} records, expected {expected}")
    return LoaderResult(g["records"], g["seconds"], g["rate"], g["requests"], g["weight"], g["r429"],
                        g["r418"], r.wall, r.rss_kb, r.cpu)


def verify(name: str, logs: Path, broker: Broker, topic: str, time_range: str, expected: int) -> None:
    """`loader-producer verify` on the topic: exactly the range, no duplicates, no gaps.

    Offline (the simulator may be gone by now): every gap counts as missing, and the edges of
    trade ranges, which verify would ask the exchange about, are covered by the record count,
    which must equal the range's."""
    env = base_env()
    env.update({"KAFKA_TOPIC": topic, "TIME_RANGE": time_range, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap})
    p = subprocess.run([str(LOADER), "verify", "--json", "--offline"], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=900)
    (logs / f"{name}.verify.json").write_text(p.stdout + p.stderr)
    if p.returncode != 0:
        raise BenchError(f"{name}: verify failed (exit {p.returncode}): see {logs / (name + '.verify.json')}")
    report = json.loads(p.stdout)
    if report["records"] != expected:
        raise BenchError(f"{name}: verify read {report['records']} records, expected {expected}")


def sample_record_size(bootstrap: str, topic: str, n: int = 20_000) -> float:
    """Mean payload bytes of the first `n` records of a topic."""
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-size", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        total = count = 0
        deadline = time.time() + 30
        while count < n and time.time() < deadline:
            for msg in c.consume(min(10_000, n - count), 1.0):
                if msg.error() is None:
                    total += len(msg.value())
                    count += 1
        return total / count if count else float("nan")
    finally:
        c.close()


# ------------------------------------------------------------------------------------------------
# Statistics and formatting


def cpu_per_m(cpu: float, records: int) -> float:
    """CPU seconds per million records."""
    return cpu / max(records, 1) * 1e6


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def fmt_n(x: float) -> str:
    return f"{x:,.0f}"


def fmt_s(x: float) -> str:
    return f"{x:.2f}"


def fmt_range(xs: list[float], f=fmt_n) -> str:
    return f"{f(min(xs))}–{f(max(xs))}" if len(xs) > 1 else "(1 run)"


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def render(self) -> str:
        parts = [f"## {self.title}", ""] + self.text
        if self.failures:
            parts += ["", "**Failures:**", ""] + [f"- {f}" for f in self.failures]
        return "\n".join(parts) + "\n"


def readable_range(time_range: str) -> str:
    """`START:END` with epoch-ms sides written as UTC times."""
    def side(x: str) -> str:
        if x.isdigit():
            return dt.datetime.fromtimestamp(int(x) / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
        return x
    a, b = time_range.split(":")
    return f"{side(a)} to {side(b)}"


def years_range(start_year: int, years: int) -> str:
    return f"{start_year}-01-01:{start_year + years}-01-01"


def ms_of(day: str) -> int:
    return int(dt.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


def candles_in(time_range: str, step_ms: int) -> int:
    a, b = time_range.split(":")
    return (ms_of(b) - ms_of(a)) // step_ms


def day_plus(day: str, days: int) -> str:
    d = dt.datetime.strptime(day, "%Y-%m-%d") + dt.timedelta(days=days)
    return d.strftime("%Y-%m-%d")


# ------------------------------------------------------------------------------------------------
# Scenarios


class Bench:
    def __init__(self, quick: bool, logs: Path, runs: int | None):
        self.quick, self.logs = quick, logs
        self.fast_runs = runs or (1 if quick else 5)
        self.slow_runs = runs or (1 if quick else 3)
        self.seq = 0
        # Every path against its ceiling, for the summary: (path, whole process ÷ ceiling or
        # None, the loader's CPU per record ÷ the ceiling's).
        self.against_ceiling: list[tuple[str, float | None, float]] = []

    def name(self, label: str) -> str:
        self.seq += 1
        return f"{self.seq:03d}-{label}"

    def fresh(self, *sim_flags: str) -> tuple[Broker, Simulator]:
        return Broker(self.logs), Simulator(self.logs, *sim_flags)

    @staticmethod
    def close(broker: Broker | None, sim: Simulator | None) -> None:
        if sim:
            sim.stop()
        if broker:
            broker.stop()

    # -- 1 -------------------------------------------------------------------------------------
    def throughput(self) -> Section:
        s = Section("1. Throughput: ceiling vs loader")
        concurrency = loader_default("FETCH_CONCURRENCY")
        if self.quick:
            candles_range, trades_range = "2024-01-01:2024-05-01", "2024-01-01:2024-01-02"
        else:
            candles_range, trades_range = years_range(2020, 4), "2024-01-01:2024-01-07"
        cases = [("api_candles_1m", candles_range), ("api_trades", trades_range)]
        res: dict[str, dict[str, list]] = {}
        for dtype, rng in cases:
            res[dtype] = {"ceiling": [], "loader": [], "records": None, "size": None, "verified": False,
                          "ceiling_verified": False}
        for i in range(self.fast_runs):
            for dtype, rng in cases:
                r = res[dtype]
                for who in ("ceiling", "loader"):  # A B A B: alternating within each round
                    broker = sim = None
                    name = self.name(f"s1-{dtype}-{who}")
                    topic = f"bench-{name}"
                    try:
                        if who == "ceiling":
                            broker = Broker(self.logs)
                            env = base_env()
                            run = run_timed(name, [str(CEILING), "--kafka-bootstrap-servers", broker.bootstrap,
                                                   "--kafka-topic", topic, "--type", dtype, "--symbol", "BTCUSDT",
                                                   "--time-range", rng], env, self.logs, 900)
                            out = json.loads(run.stdout.strip().splitlines()[-1])
                            r["records"] = r["records"] or out["records"]
                            if out["records"] != r["records"]:
                                raise BenchError(f"{name}: {out['records']} records, expected {r['records']}")
                            r["size"] = out["avg_record_bytes"]
                            r["ceiling"].append(out)
                            if not r["ceiling_verified"]:
                                verify(name, self.logs, broker, topic, rng, out["records"])
                                r["ceiling_verified"] = True
                        else:
                            broker, sim = self.fresh("--weight-limit", "100000000")
                            lr = run_loader(name, self.logs, broker, sim, topic, dtype, rng, r["records"], 900,
                                            RATE_LIMIT_SHARE="1")
                            r["loader"].append(lr)
                            if not r["verified"]:
                                verify(name, self.logs, broker, topic, rng, lr.records)
                                r["verified"] = True
                    except BenchError as e:
                        s.failures.append(str(e))
                    finally:
                        self.close(broker, sim)
        # Instructions over REST: candles over 30 and 60 days, trades over 6 and 12 hours (86,400 and
        # 172,800 at the simulator's 250 ms), in both modes: under callgrind a process runs some 50× slower.
        t0 = ms_of("2024-01-01")
        ir_cases = [("api_candles_1m", ["2024-01-01:2024-01-31", "2024-01-01:2024-03-01"]),
                    ("api_trades", [f"{t0}:{t0 + 6 * 3_600_000}", f"{t0}:{t0 + 12 * 3_600_000}"])]
        ir_lines: list[str] = []
        ir_rows: list[list[str]] = []
        for dtype, ranges in ir_cases if VALGRIND else []:
            broker = sim = None
            try:
                broker, sim = self.fresh("--weight-limit", "100000000")
                ic = self._instructions(s, "s1", dtype, ranges, sim, 250, RATE_LIMIT_SHARE="1")
                if "ceiling" in ic and "loader" in ic:
                    line, fn_rows = instruction_text(f"`{dtype}` REST", ic)
                    ir_lines.append(line)
                    ir_rows += fn_rows
            except BenchError as e:
                s.failures.append(str(e))
            finally:
                self.close(broker, sim)
        rows = []
        for dtype, rng in cases:
            r = res[dtype]
            c = [o["records_per_s"] for o in r["ceiling"]]
            cc = [o["records"] / o.get("seconds_with_connect", o["seconds"]) for o in r["ceiling"]]
            lo = [x.rate for x in r["loader"]]
            lw = [x.records / x.wall for x in r["loader"]]
            size = f"{r['size']:.0f} B" if r["size"] else "?"
            recs = fmt_n(r["records"]) if r["records"] else "?"
            ccpu = [cpu_per_m(o["cpu_seconds_with_connect"], o["records"]) for o in r["ceiling"]]
            lcpu = [cpu_per_m(x.cpu, x.records) for x in r["loader"]]
            if c:
                rows.append([f"ceiling `{dtype}`", recs, size, fmt_n(med(c)), fmt_range(c),
                             fmt_s(med([o["seconds"] for o in r["ceiling"]])),
                             f"{med([cpu_per_m(o['cpu_seconds'], o['records']) for o in r['ceiling']]):.2f}",
                             "100%", "", ""])
                rows.append([f"ceiling `{dtype}` (with Kafka connection)", recs, size, fmt_n(med(cc)),
                             fmt_range(cc),
                             fmt_s(med([o.get("seconds_with_connect", o["seconds"]) for o in r["ceiling"]])),
                             f"{med(ccpu):.2f}", "100%", "", ""])
            if lo:
                ratio = med(lo) / med(c) if c else float("nan")
                rows.append([f"loader `{dtype}` (summary line)", recs, size, fmt_n(med(lo)), fmt_range(lo),
                             fmt_s(med([x.seconds for x in r["loader"]])), "", f"{ratio:.0%}", "≥ 70%",
                             verdict(ratio >= 0.70)])
                ratio_w = med(lw) / med(cc) if cc else float("nan")
                cpu_x = f" (CPU {med(lcpu) / med(ccpu):.2f}×)" if ccpu else ""
                if ccpu:
                    self.against_ceiling.append((f"REST `{dtype}`", ratio_w, med(lcpu) / med(ccpu)))
                rows.append([f"loader `{dtype}` (whole process)", recs, size, fmt_n(med(lw)), fmt_range(lw),
                             fmt_s(med([x.wall for x in r["loader"]])), f"{med(lcpu):.2f}",
                             f"{ratio_w:.0%}{cpu_x}", "≥ 70%", verdict(ratio_w >= 0.70)])
        s.text += [
            f"Candles: `api_candles_1m`, TIME_RANGE {candles_range}; aggregate trades: `api_trades`, "
            f"TIME_RANGE {trades_range} (simulator spacing 250 ms, 345,600 trades a day); one symbol (BTCUSDT). "
            f"{self.fast_runs} run(s) per contestant, alternating ceiling, loader, ceiling, loader.",
            "",
            "- **Ceiling**: `examples/ceiling.rs`, a minimal rdkafka producer with the loader's own "
            "`sink::producer_config` (idempotent, acks=all, lz4, 20 ms linger) and the sink's sending pattern "
            "(a `BaseProducer`; `poll(5 ms)` while the queue is full, `poll(0)` after every page; the sink's flush, `kafka::flush`), publishing the very bytes the loader would (the simulator's generator, serialised by the "
            "loader's `RecordBatch`, keyed by symbol), generated before the clock starts; timed from the "
            "first send to the end of the flush; *with Kafka connection* also counts creating the producer, "
            "waiting for the cluster and creating the topic before the first send.",
            "- **Loader**: `loader-producer` end to end from the simulator (no added latency, weight limit "
            f"100,000,000, `RATE_LIMIT_SHARE=1`, default `FETCH_CONCURRENCY` ({concurrency})) to the broker. *Summary line*: "
            "the loader's own timing (from connecting to Binance to the last acknowledgement; the Kafka "
            "connection before it is not counted). *Whole process*: records / wall time of the process, "
            "startup, Kafka connection and shutdown included, compared with the ceiling's *with Kafka connection*. "
            "The target is judged on both.",
            "- On this 2-core machine the loader shares the CPU with the simulator it reads from (about 1 "
            "CPU-second per 2 million candles, generating and serialising the pages) as well as with the "
            "broker; the ceiling shares it with the broker only.",
            "- *CPU s / 10⁶ records*: user + system CPU seconds of the process itself (every thread, not the "
            "simulator's nor the broker's) per million records, median of the runs: the loader's whole process "
            "(`/usr/bin/time`), the ceiling's publishing (and, *with Kafka connection*, its connection too; its "
            "generation before that is not counted). It varies from run to run and machine to machine too (the "
            "ceiling's own figure moved by half between two runs on this shared machine): compare the loader "
            "with the ceiling of the same run; *(CPU n×)* is the loader's over the ceiling's.",
            "- Each run has a fresh broker (and simulator). Checks: every loader run's summary count equals the "
            "range's record count; the first loader topic and the first ceiling topic of each type pass "
            "`loader-producer verify` for the range.",
            "",
            table(["contestant", "records", "record size", "records/s (median)", "min–max", "seconds (median)",
                   "CPU s / 10⁶ records", "vs ceiling", "target", "result"], rows),
            "",
            *instruction_section_text("candles of 2024-01-01:2024-01-31 and 2024-01-01:2024-03-01, trades of the "
                                      "first 6 and 12 hours of 2024-01-01 (the simulator with the weight limit above)",
                                      ir_lines, ir_rows),
        ]
        return s

    # -- 2 -------------------------------------------------------------------------------------
    def python_baselines(self) -> Section:
        s = Section("2. Against the original Python loader")
        if self.quick:
            small, big = "2024-01-01:1704127200000", "2024-01-01:2024-03-01"  # 1,000 and 86,400
        else:
            small, big = "2024-01-01:1704367200000", years_range(2023, 1)  # 5,000 and 525,600
        def count(rng: str) -> int:
            a, b = rng.split(":")
            conv = lambda x: int(x) if x.isdigit() else ms_of(x)  # noqa: E731
            return (conv(b) - conv(a)) // 60_000
        n_small, n_big = count(small), count(big)
        contestants = [("original", "original_loader.py", small, n_small),
                       ("tuned", "tuned_loader.py", big, n_big),
                       ("loader", None, big, n_big)]
        results: dict[str, list] = {c[0]: [] for c in contestants}
        sizes: dict[str, float] = {}
        verified: set[str] = set()
        for i in range(self.slow_runs):
            for who, script, rng, n in contestants:
                broker = sim = None
                name = self.name(f"s2-{who}")
                topic = f"bench-{name}"
                try:
                    broker, sim = self.fresh("--weight-limit", "100000000")
                    if script:
                        run = run_timed(name, [PYTHON, str(BENCH / "baselines" / script), "--api-url", sim.url,
                                               "--bootstrap", broker.bootstrap, "--topic", topic,
                                               "--time-range", rng], base_env(), self.logs, 1800)
                        out = json.loads(run.stdout.strip().splitlines()[-1])
                        if out["records"] != n:
                            raise BenchError(f"{name}: {out['records']} records, expected {n}")
                        sizes[who] = out["bytes"] / out["records"]
                        results[who].append((out["records_per_s"], out["records"] / run.wall, run.rss_kb))
                    else:
                        lr = run_loader(name, self.logs, broker, sim, topic, "api_candles_1m", rng, n, 900,
                                        RATE_LIMIT_SHARE="1")
                        results[who].append((lr.rate, lr.records / lr.wall, lr.rss_kb))
                        if who not in sizes:
                            sizes[who] = sample_record_size(broker.bootstrap, topic)
                    if who not in verified:
                        verify(name, self.logs, broker, topic, rng, n)
                        verified.add(who)
                except BenchError as e:
                    s.failures.append(str(e))
                finally:
                    self.close(broker, sim)
        rows = []
        loader = [x[0] for x in results["loader"]]
        loader_w = [x[1] for x in results["loader"]]
        targets = {"original": 50, "tuned": 5}
        for who, _script, rng, n in contestants:
            xs = [x[0] for x in results[who]]
            ws = [x[1] for x in results[who]]
            rss = [x[2] for x in results[who]]
            if not xs:
                continue
            size = f"{sizes.get(who, float('nan')):.0f} B"
            if who in targets and loader:
                f = med(loader) / med(xs)
                fw = med(loader_w) / med(ws)
                rows.append([who, fmt_n(n), size, fmt_n(med(xs)), fmt_range(xs), fmt_n(med(ws)),
                             f"{med(rss) / 1024:.0f} MB", f"{f:,.1f}× ({fw:,.1f}×)", f"≥ {targets[who]}×",
                             verdict(f >= targets[who])])
            else:
                rows.append([who, fmt_n(n), size, fmt_n(med(xs)), fmt_range(xs), fmt_n(med(ws)),
                             f"{med(rss) / 1024:.0f} MB", "", "", ""])
        s.text += [
            f"1m candles of BTCUSDT from the simulator (no added latency, no rate limit) to the broker, "
            f"{self.slow_runs} run(s) each, alternating original, tuned, loader.",
            "",
            "- **original**: `bench/baselines/original_loader.py`, in the style of the platform's original "
            "loader: requests fetches one page of 1000 candles, then each record is produced and its "
            "acknowledgement awaited (`produce()` + `flush()`) before the next; confluent-kafka with acks=all. "
            f"It manages a few thousand records a second, so it loads a smaller range ({n_small:,} candles, "
            f"TIME_RANGE {small}); the comparison is records/second.",
            "- **tuned**: `bench/baselines/tuned_loader.py`: 8 fetch threads with in-order read-ahead, one "
            "asynchronous confluent-kafka producer with the loader's settings (idempotent, acks=all, lz4, "
            "20 ms linger, large batches), `poll(0)`, one flush at the end; TIME_RANGE " + big + ".",
            f"- **loader**: `loader-producer`, defaults except `RATE_LIMIT_SHARE=1`; TIME_RANGE {big}.",
            "- records/s: the contestant's own timing (Python: first request to last acknowledgement; loader: "
            "its summary line). Whole-process records/s (interpreter or process start included) in its own "
            "column; the factor in brackets uses it. The same record JSON (byte for byte) everywhere: every "
            "contestant's first topic passes `loader-producer verify`.",
            "",
            table(["contestant", "records", "record size", "records/s (median)", "min–max",
                   "records/s, whole process", "peak RSS", "loader ÷ contestant", "target", "result"], rows),
        ]
        return s

    # -- 3 -------------------------------------------------------------------------------------
    def latency(self) -> Section:
        s = Section("3. Latency-bound history")
        rng = "2024-01-01:2024-02-01" if self.quick else years_range(2023, 1)
        n = candles_in(rng, 60_000)
        share, conc = loader_default("RATE_LIMIT_SHARE"), loader_default("FETCH_CONCURRENCY")
        contestants = [(f"loader (defaults: FETCH_CONCURRENCY {conc})", {}),
                       ("baseline: sequential pagination (FETCH_CONCURRENCY 1)", {"FETCH_CONCURRENCY": "1"})]
        results: dict[str, list] = {c[0]: [] for c in contestants}
        stats: dict[str, list] = {c[0]: [] for c in contestants}
        verified = False
        size = None
        for i in range(self.slow_runs):
            for who, extra in contestants:
                broker = sim = None
                name = self.name("s3-" + ("seq" if extra else "loader"))
                topic = f"bench-{name}"
                try:
                    broker, sim = self.fresh("--latency-ms", "100")  # default budget: 6000 per 60 s
                    lr = run_loader(name, self.logs, broker, sim, topic, "api_candles_1m", rng, n, 1800, **extra)
                    results[who].append(lr)
                    stats[who].append(sim.stats())
                    if not verified:
                        verify(name, self.logs, broker, topic, rng, n)
                        size = sample_record_size(broker.bootstrap, topic)
                        verified = True
                except BenchError as e:
                    s.failures.append(str(e))
                finally:
                    self.close(broker, sim)
        rows = []
        for who, extra in contestants:
            rs = results[who]
            if not rs:
                continue
            walls = [x.wall for x in rs]
            secs = [x.seconds for x in rs]
            st = stats[who]
            r429 = sum(x["responses_429"] for x in st)  # what the simulator sent, over all runs
            r418 = sum(x["responses_418"] for x in st)
            maxw = max(x["max_window_weight"] for x in st)
            own = int(6000 * float(share)) if share != "?" else 6000  # the loader's default budget
            within = r429 == 0 and r418 == 0 and maxw <= own
            target = "" if extra else "≤ 10 s"
            res = "" if extra else verdict(med(walls) <= 10 and within)
            rows.append([who, fmt_n(n), f"{size:.0f} B" if size else "?", fmt_s(med(walls)), fmt_range(walls, fmt_s),
                         fmt_s(med(secs)), f"{rs[0].requests:,} / {rs[0].weight:,}", f"{maxw:,} of {own:,}",
                         f"{r429} / {r418}", target, res])
        if results[contestants[0][0]] and results[contestants[1][0]]:
            speed = med([x.wall for x in results[contestants[1][0]]]) / med([x.wall for x in results[contestants[0][0]]])
            extra_line = f"The loader is {speed:.1f}× faster than sequential pagination (whole process)."
        else:
            extra_line = ""
        s.text += [
            f"One year of 1m candles would be 525,600 records{' (quick mode: one month)' if self.quick else ''}: "
            f"TIME_RANGE {rng}, {n:,} records. The simulator adds 100 ms to every REST response and enforces "
            "its default budget (6,000 weight per 60 s window); the loader runs with its defaults "
            f"(`RATE_LIMIT_SHARE` {share}, `FETCH_CONCURRENCY` {conc}). The baseline is the same loader with "
            f"`FETCH_CONCURRENCY=1`: one request after another. {self.slow_runs} run(s) each, alternating; fresh "
            "simulator and broker per run.",
            "",
            "Seconds: wall time of the whole process (startup and Kafka connection included), which the target "
            "is judged on; the loader's own summary-line seconds beside it. *Max window weight* is the most "
            "weight the simulator accepted in one window over all runs, against the loader's default budget "
            "(its default share of the 6,000); the target needs that within the budget and no 429 or 418 as well.",
            "",
            table(["contestant", "records", "record size", "seconds (median)", "min–max", "summary-line seconds",
                   "requests / weight per run", "max window weight", "429 / 418", "target", "result"], rows),
            "",
            extra_line,
        ]
        return s

    # -- 4 -------------------------------------------------------------------------------------
    def rate_budget(self) -> Section:
        s = Section("4. Rate budget")
        limit, window_ms = 100, 1000
        rng = "2024-01-01:2024-05-01" if self.quick else years_range(2023, 1)
        n = candles_in(rng, 60_000)
        shares = ["1", "0.5"]
        results: dict[str, list] = {x: [] for x in shares}
        verified = False
        size = None
        for i in range(self.slow_runs):
            for share in shares:
                broker = sim = None
                name = self.name(f"s4-share{share}")
                topic = f"bench-{name}"
                try:
                    broker, sim = self.fresh("--weight-limit", str(limit), "--weight-window-ms", str(window_ms))
                    timeline = WeightTimeline(sim)
                    timeline.start()
                    try:
                        lr = run_loader(name, self.logs, broker, sim, topic, "api_candles_1m", rng, n, 1800,
                                        RATE_LIMIT_SHARE=share)
                    finally:
                        time.sleep(0.05)
                        timeline.stop()
                    st = sim.stats()
                    budget = int(limit * float(share))
                    wins = timeline.per_window(window_ms)
                    (self.logs / f"{name}.windows.json").write_text(json.dumps(wins))
                    # Windows the loader spent loading from start to end: not the first (it connects
                    # part-way into it) nor the last (it runs out of work in it).
                    bound = wins[1:-1]
                    used = sum(w for _, w in bound) / (budget * len(bound)) if bound else float("nan")
                    results[share].append({"used": used, "windows": len(wins), "last": wins[-1][1] if wins else 0,
                                           "weight": st["weight_total"], "loader_weight": lr.weight,
                                           "r429": st["responses_429"], "r418": st["responses_418"],
                                           "loader_429": lr.r429, "loader_418": lr.r418,
                                           "violations": st["budget_violations"], "max_window": st["max_window_weight"],
                                           "per_window_max": max((w for _, w in wins), default=0),
                                           "seconds": lr.seconds, "wall": lr.wall, "budget": budget,
                                           "time_share": st["weight_total"] / (budget * lr.seconds * 1000 / window_ms)})
                    if not verified:
                        verify(name, self.logs, broker, topic, rng, n)
                        size = sample_record_size(broker.bootstrap, topic)
                        verified = True
                except BenchError as e:
                    s.failures.append(str(e))
                finally:
                    self.close(broker, sim)
        rows = []
        for share in shares:
            rs = results[share]
            if not rs:
                continue
            used = [r["used"] for r in rs]
            r429 = sum(r["r429"] for r in rs)
            r418 = sum(r["r418"] for r in rs)
            ok = med(used) >= 0.90 and r429 == 0 and r418 == 0
            rows.append([f"`RATE_LIMIT_SHARE={share}`", fmt_n(n), f"{size:.0f} B" if size else "?",
                         f"{rs[0]['budget']} / {window_ms / 1000:g} s", fmt_s(med([r['seconds'] for r in rs])),
                         f"{med([r['windows'] for r in rs]):.0f}", f"{med([r['weight'] for r in rs]):,.0f}",
                         f"{med(used):.1%}", fmt_range(used, lambda x: f"{x:.1%}"),
                         f"{med([r['time_share'] for r in rs]):.1%}",
                         f"{max(r['max_window'] for r in rs)}", f"{r429} / {r418}",
                         "≥ 90%, 0 × 429, 0 × 418", verdict(ok)])
        mismatch = [f"`RATE_LIMIT_SHARE={sh}`" for sh, rs in results.items()
                    if sum(r["loader_429"] for r in rs) != sum(r["r429"] for r in rs)
                    or sum(r["loader_418"] for r in rs) != sum(r["r418"] for r in rs)]
        agree = ("" if not mismatch else
                 "Note: the loader's summary lines counted other 429/418 numbers than the simulator for "
                 + ", ".join(mismatch) + " (see the logs).")
        s.text += [
            f"The simulator enforces a budget of {limit} weight per {window_ms} ms window (fixed windows aligned to "
            f"the epoch, like Binance's minute; scaled down so the scenario takes seconds); the loader loads "
            f"TIME_RANGE {rng} of 1m candles ({n:,} records, 2 weight per 1000-candle page) with "
            f"`RATE_LIMIT_SHARE` 1 and 0.5 (its default). {self.slow_runs} run(s) each, alternating; fresh "
            "simulator and broker per run.",
            "",
            "*Budget used* = weight the simulator charged in the windows in which the loader was bound by the "
            "budget ÷ (configured budget × those windows). The configured budget is "
            "⌊limit × RATE_LIMIT_SHARE⌋. The windows are the simulator's own fixed windows (aligned to multiples "
            "of the window length) strictly between the first one in which the loader spent weight and the last: "
            "the first is left out because the loader connects part-way into it (to Binance and Kafka, then "
            "announces `started`), the last because it runs out of work in it. The per-window weight "
            "comes from polling the simulator's `GET /sim/stats` (which costs no weight) every 10 ms. "
            "*Time-based* is the cruder total weight ÷ (budget × summary-line seconds ÷ window), all windows "
            "included, for comparison (it can exceed 100%: a fixed window's budget is all available at once). "
            "429/418 are what the simulator sent, over all runs (checked against the loader's summary lines); *max window* is "
            "the most weight the simulator accepted in one window.",
            "",
            table(["contestant", "records", "record size", "budget", "seconds (median)", "windows",
                   "weight charged", "budget used (median)", "min–max", "time-based", "max window",
                   "429 / 418", "target", "result"], rows),
            *(["", agree] if agree else []),
        ]
        s.text += self._bybit_budget(s)
        s.text += self._okx_budget(s)
        s.text += self._okx_trades_budget(s)
        return s

    def _bybit_budget(self, s: Section) -> list[str]:
        """Bybit's IP limit, 600 requests in any 5 s, as the simulator enforces it (a 403 and a
        10-minute ban past it): the loader's candles at RATE_LIMIT_SHARE 1 and 0.5."""
        # More requests than a budget at either share, so the limit binds: 1,052 and 1,578.
        rng = years_range(2022, 2) if self.quick else years_range(2021, 3)
        return self._venue_budget(
            s, label="Bybit", venue="bybit", market="linear", symbol="BTCUSDT", rng=rng, per_request=1000,
            limit=600, window_s=5, busiest=lambda st: st["max_in_window"],
            refused=lambda st: st["responses_403"], refusal="403",
            limit_text="its IP limit of 600 requests in any 5 s (sliding), which the simulator's Bybit venue "
                       "enforces with HTTP 403 and a 10-minute ban")

    def _okx_budget(self, s: Section) -> list[str]:
        """OKX's limit of history-candles, 20 requests in any 2 s per IP, as the simulator
        enforces it (HTTP 429, code 50011): the loader's candles at RATE_LIMIT_SHARE 1 and 0.5."""
        endpoint = "/api/v5/market/history-candles"
        # 101 and 432 requests of 100 candles: several budgets at either share.
        rng = "2024-01-01:2024-01-08" if self.quick else "2024-01-01:2024-01-31"
        return self._venue_budget(
            s, label="OKX", venue="okx", market="swap", symbol="BTC-USDT-SWAP", rng=rng, per_request=100,
            limit=20, window_s=2, busiest=lambda st: st["max_in_window"].get(endpoint, 0),
            refused=lambda st: st["responses_429"], refusal="429",
            limit_text="the limit of history-candles, 20 requests in any 2 s (sliding), which the simulator's "
                       "OKX venue enforces with HTTP 429 (code 50011)")

    def _okx_trades_budget(self, s: Section) -> list[str]:
        """OKX's limit of history-trades, 20 requests in any 2 s per IP: the loader's trades over
        REST (windows walked back from their ends, four at once) at RATE_LIMIT_SHARE 1 and 0.5."""
        endpoint = "/api/v5/market/history-trades"
        # Two trades a second (spacing 1000 ms): 7,200 or 21,600 trades, 72 or 216 requests, two
        # days ago (history-trades serves the last three months of the simulator's clock, now).
        day = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)).strftime("%Y-%m-%d")
        rng = f"{day}T00:00:00Z:{day}T{1 if self.quick else 3:02d}:00:00Z"
        return self._venue_budget(
            s, label="OKX trades", venue="okx", market="swap", symbol="BTC-USDT-SWAP", rng=rng, per_request=100,
            limit=20, window_s=2, busiest=lambda st: st["max_in_window"].get(endpoint, 0),
            refused=lambda st: st["responses_429"], refusal="429", dtype="api_raw_trades",
            what="trades", sim_args=["--agg-trade-spacing-ms", "1000"],
            limit_text="the limit of history-trades, 20 requests in any 2 s (sliding), which the simulator's "
                       "OKX venue enforces with HTTP 429 (code 50011)")

    def _venue_budget(self, s: Section, *, label: str, venue: str, market: str, symbol: str, rng: str,
                      per_request: int, limit: int, window_s: int, busiest, refused, refusal: str,
                      limit_text: str, dtype: str = "api_candles_1m", what: str = "1m candles",
                      sim_args: list[str] | None = None) -> list[str]:
        """A venue's request limit, one budget of `limit` in any `window_s` (sliding): the loader's
        `dtype` of `rng` at RATE_LIMIT_SHARE 1 and 0.5, the simulator's own count of the busiest
        window and of refusals beside them. Candles are counted from the range; other types by the
        first run (every run must publish as many)."""
        n = candles_in(rng, 60_000) if dtype == "api_candles_1m" else None
        url_var = f"{venue.upper()}_API_URL"
        rows = []
        for share in ["1", "0.5"]:
            runs = []
            for i in range(self.slow_runs):
                broker = sim = None
                name = self.name(f"s4-{venue}-share{share}")
                topic = f"bench-{name}"
                try:
                    broker, sim = self.fresh(*(sim_args or []))
                    lr = run_loader(name, self.logs, broker, sim, topic, dtype, rng, n, 1800,
                                    EXCHANGE=venue, MARKET=market, SYMBOL=symbol,
                                    **{url_var: f"{sim.url}/{venue}"}, RATE_LIMIT_SHARE=share)
                    n = n if n is not None else lr.records
                    st = sim.stats()[venue]
                    budget = int(limit * float(share))
                    # Requests over the ones the elapsed time allowed: the whole budget at the
                    # start, then a budget a window.
                    allowed = budget * (1 + lr.seconds / window_s)
                    runs.append({"seconds": lr.seconds, "requests": lr.requests, "busiest": busiest(st),
                                 "refused": refused(st), "budget": budget,
                                 "used": lr.requests / allowed, "rate": lr.rate})
                    if i == 0 and share == "1":
                        verify(name, self.logs, broker, topic, rng, n)
                except BenchError as e:
                    s.failures.append(str(e))
                finally:
                    self.close(broker, sim)
            if not runs:
                continue
            most = max(r["busiest"] for r in runs)
            refusals = sum(r["refused"] for r in runs)
            ok = most <= runs[0]["budget"] and refusals == 0
            rows.append([f"{label} `RATE_LIMIT_SHARE={share}`", fmt_n(n), f"{runs[0]['budget']} / {window_s} s",
                         fmt_s(med([r["seconds"] for r in runs])), fmt_n(med([r["rate"] for r in runs])),
                         f"{med([r['requests'] for r in runs]):,.0f}", f"{most}",
                         f"{med([r['used'] for r in runs]):.0%}", f"{refusals}",
                         f"busiest ≤ budget, 0 × {refusal}", verdict(ok)])
        return [
            "",
            f"{label} (`EXCHANGE={venue}`, `MARKET={market}`, `SYMBOL={symbol}`): {limit_text}; the loader loads "
            f"TIME_RANGE {rng} of {what} ({fmt_n(n) if n else '?'} records, {per_request:,} a request) at "
            "`RATE_LIMIT_SHARE` 1 and "
            f"0.5. {self.slow_runs} run(s) each, fresh simulator and broker per run. *Busiest {window_s} s*: the most "
            f"requests the simulator received within any {window_s} s (its own count); *requests*: the loader's own "
            "count (its summary line), with the instrument check and the clock; *budget used*: requests ÷ what the "
            f"summary line's seconds allowed (the budget at once, then a budget every {window_s} s). The venue's REST "
            "is bound by this limit, not by the machine: the records/s are what the venue allows.",
            "",
            table(["contestant", "records", "budget", "seconds (median)", "records/s (median)", "requests",
                   f"busiest {window_s} s", "budget used", refusal, "target", "result"], rows),
        ]

    # -- 5 -------------------------------------------------------------------------------------
    def memory(self) -> Section:
        s = Section("5. Memory")
        start = "2024-01-01"
        if self.quick:
            cases = [("small", f"{start}:{day_plus(start, 3)}"), ("large", f"{start}:{day_plus(start, 12)}")]
        else:
            cases = [("1M", f"{start}:{day_plus(start, 12)}"), ("10M", f"{start}:{day_plus(start, 116)}")]
        results: dict[str, list] = {c[0]: [] for c in cases}
        verified: set[str] = set()
        size = None
        for i in range(self.slow_runs):
            for label, rng in cases:
                broker = sim = None
                name = self.name(f"s5-{label}")
                topic = f"bench-{name}"
                n = candles_in(rng, 1000)
                try:
                    broker, sim = self.fresh("--weight-limit", "100000000")
                    lr = run_loader(name, self.logs, broker, sim, topic, "api_candles_1s", rng, n, 1800,
                                    RATE_LIMIT_SHARE="1")
                    results[label].append(lr)
                    if label not in verified and (label == cases[-1][0] or self.quick):
                        verify(name, self.logs, broker, topic, rng, n)
                        verified.add(label)
                    if size is None:
                        size = sample_record_size(broker.bootstrap, topic)
                except BenchError as e:
                    s.failures.append(str(e))
                finally:
                    self.close(broker, sim)
        rows = []
        peaks = {}
        for label, rng in cases:
            rs = results[label]
            if not rs:
                continue
            mb = [x.rss_kb / 1024 for x in rs]
            peaks[label] = med(mb)
            rows.append([f"loader, {rng.replace(':', ' to ')}", fmt_n(rs[0].records), f"{size:.0f} B" if size else "?",
                         f"{med(mb):.1f} MB", fmt_range(mb, lambda x: f"{x:.1f}"), fmt_n(med([x.rate for x in rs])),
                         "< 100 MB", verdict(max(mb) < 100)])
        flat = ""
        if len(peaks) == 2:
            a, b = peaks[cases[0][0]], peaks[cases[1][0]]
            flat = (f"Flat: the median peaks differ by {b - a:+.1f} MB for {results[cases[1][0]][0].records / max(1, results[cases[0][0]][0].records):.0f}× "
                    f"the records (target: within 5 MB): {verdict(abs(b - a) <= 5)}.")
        s.text += [
            "Peak resident memory (`/usr/bin/time -f %M`, the whole process) of the loader publishing 1s "
            "candles of BTCUSDT (the quickest way to many records: 86,400 a day) from the simulator (no rate "
            f"limit, `RATE_LIMIT_SHARE=1`) to the broker, at two range lengths. {self.slow_runs} run(s) each, "
            "alternating; fresh simulator and broker per run; the larger topic passes `verify`.",
            "",
            table(["contestant", "records", "record size", "peak RSS (median)", "min–max (MB)", "records/s",
                   "target", "result"], rows),
            "",
            flat,
        ]
        return s


    # -- 6 -------------------------------------------------------------------------------------
    def _instructions(self, s: Section, tag: str, dtype: str, ranges: list[str], sim: Simulator, spacing: int,
                      **loader_env: str) -> dict[str, InstructionCount]:
        """The ceiling and the loader (with `loader_env`, reading `sim`) under callgrind, one run over each
        of the two `ranges`, a fresh broker each."""
        if not VALGRIND:
            return {}
        found: dict[str, InstructionCount] = {}
        for who in ("ceiling", "loader"):
            runs, files = [], []
            for rng in ranges:
                broker = None
                name = self.name(f"{tag}-{dtype}-{who}-instructions")
                out_file = self.logs / f"{name}.callgrind"
                try:
                    broker = Broker(self.logs)
                    if who == "ceiling":
                        run = run_timed(name, [*callgrind(out_file), str(CEILING), "--kafka-bootstrap-servers",
                                               broker.bootstrap, "--kafka-topic", f"bench-{name}", "--type", dtype,
                                               "--symbol", "BTCUSDT", "--agg-trade-spacing-ms", str(spacing),
                                               "--time-range", rng], base_env(), self.logs, 1800)
                        n = json.loads(run.stdout.strip().splitlines()[-1])["records"]
                    else:
                        n = run_loader(name, self.logs, broker, sim, f"bench-{name}", dtype, rng, None, 1800,
                                       wrap=callgrind(out_file), **loader_env).records
                    runs.append((callgrind_total(out_file), n))
                    files.append(out_file)
                except BenchError as e:
                    s.failures.append(str(e))
                finally:
                    self.close(broker, None)
            if len(runs) == 2 and runs[1][1] > runs[0][1]:
                found[who] = InstructionCount(runs, files[0], files[1])
        return found

    def _archive_runs(self, s: Section, dtype: str, rng: str, files: list[str], spacing: int,
                      ir_rngs: list[str], venue: str = "binance",
                      symbol: str = "BTCUSDT") -> tuple[list, list, int | None, dict]:
        """Ceiling and `SOURCE=archive` loader of `venue`, alternating, on one simulator whose files
        are built before any timing; then (Binance) one run of each over each of `ir_rngs` under
        callgrind. Returns (ceiling outputs, loader results, records, {who: InstructionCount})."""
        binance = venue == "binance"
        # Binance's zips come with a .CHECKSUM; Bybit's and OKX's files are asked with HEAD, then
        # fetched.
        fetched = ["", ".CHECKSUM"] if binance else [""]
        res: dict[str, list] = {"ceiling": [], "archive": []}
        records = None
        archive_sim = None
        try:
            archive_sim = Simulator(self.logs, "--agg-trade-spacing-ms", str(spacing))
            u = urllib.parse.urlparse(archive_sim.url)
            for path in files:
                for suffix in fetched:
                    c = http.client.HTTPConnection(u.hostname, u.port, timeout=900)
                    c.request("GET", path + suffix)
                    r = c.getresponse()
                    r.read()
                    c.close()
                    if r.status != 200:
                        raise BenchError(f"the simulator's archive answered {r.status} for {path}")
        except BenchError as e:
            s.failures.append(str(e))
            if archive_sim:
                archive_sim.stop()
            return [], [], None, {}
        venue_env = {
            "binance": {},
            "bybit": dict(EXCHANGE="bybit", MARKET="linear", BYBIT_API_URL=archive_sim.url + "/bybit",
                          BYBIT_ARCHIVE_URL=archive_sim.url + "/bybit-archive"),
            "okx": dict(EXCHANGE="okx", MARKET="swap", OKX_API_URL=archive_sim.url + "/okx",
                        OKX_ARCHIVE_URL=archive_sim.url + "/okx-archive"),
        }[venue]
        ceiling_venue = [] if binance else ["--exchange", venue]
        tag = f"s6-{dtype}" if binance else f"s6-{venue}-{dtype}"
        for i in range(self.fast_runs):
            for who in ("ceiling", "archive"):
                broker = None
                name = self.name(f"{tag}-{who}")
                topic = f"bench-{name}"
                try:
                    broker = Broker(self.logs)
                    if who == "ceiling":
                        run = run_timed(name, [str(CEILING), "--kafka-bootstrap-servers", broker.bootstrap,
                                               "--kafka-topic", topic, "--type", dtype, "--symbol", symbol,
                                               *ceiling_venue, "--agg-trade-spacing-ms", str(spacing),
                                               "--time-range", rng],
                                        base_env(), self.logs, 900)
                        out = json.loads(run.stdout.strip().splitlines()[-1])
                        records = records or out["records"]
                        res["ceiling"].append(out)
                    else:
                        lr = run_loader(name, self.logs, broker, archive_sim, topic, dtype, rng, records, 900,
                                        SOURCE="archive", SYMBOL=symbol, **venue_env)
                        res["archive"].append(lr)
                        if i == 0:
                            verify(name, self.logs, broker, topic, rng, lr.records)
                except BenchError as e:
                    s.failures.append(str(e))
                finally:
                    self.close(broker, None)
        instructions = ({} if not binance else
                        self._instructions(s, "s6", dtype, ir_rngs, archive_sim, spacing, SOURCE="archive"))
        archive_sim.stop()
        return res["ceiling"], res["archive"], records, instructions

    def _archive_rows(self, label: str, rng: str, what: str, ceiling: list, archive: list,
                      records: int | None) -> list[list[str]]:
        """The table rows of a ceiling and the loader reading the same records from an archive."""
        rows = []
        c = [o["records_per_s"] for o in ceiling]
        cc = [o["records"] / o.get("seconds_with_connect", o["seconds"]) for o in ceiling]
        n = fmt_n(records) if records else "?"
        ccpu = [cpu_per_m(o["cpu_seconds_with_connect"], o["records"]) for o in ceiling]
        if c:
            rows.append([f"ceiling {label}", rng, n, fmt_n(med(c)), fmt_range(c), fmt_n(med(cc)),
                         f"{med(ccpu):.2f}", "", "100%", "", ""])
        if archive and c:
            lo, lw = [x.rate for x in archive], [x.records / x.wall for x in archive]
            mb = [x.rss_kb / 1024 for x in archive]
            lcpu = [cpu_per_m(x.cpu, x.records) for x in archive]
            ratio, ratio_w = med(lo) / med(c), med(lw) / med(cc)
            self.against_ceiling.append((f"archive {label}", ratio_w, med(lcpu) / med(ccpu)))
            rows.append([f"loader {label}, `SOURCE=archive`, {what}", rng, n, fmt_n(med(lo)), fmt_range(lo),
                         fmt_n(med(lw)), f"{med(lcpu):.2f} ({med(lcpu) / med(ccpu):.2f}×)",
                         f"{med(mb):.1f} MB (max {max(mb):.1f})",
                         f"{ratio:.0%} / {ratio_w:.0%}", "≥ 70%, < 100 MB",
                         verdict(min(ratio, ratio_w) >= 0.70 and max(mb) < 100)])
        return rows

    def archive(self) -> Section:
        s = Section("6. Deep history from the archive")
        if self.quick:
            trades_rng, spacing, candles_rng = "2024-01-01:2024-01-02", 1000, "2024-01-01:2024-01-02"
        else:
            # Six days: long enough that REST's first, already-spent-free budget window does not
            # flatter it (a loader that runs for minutes gets 3,000 weight a minute, no more).
            trades_rng, spacing, candles_rng = "2024-01-01:2024-01-07", 250, "2024-01-01:2024-02-01"
        start = trades_rng.split(":")[0]
        days = (ms_of(trades_rng.split(":")[1]) - ms_of(start)) // DAY_MS
        trade_files = [f"/data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-{day_plus(start, d)}.zip"
                       for d in range(days)]
        candle_files = (["/data/spot/daily/klines/BTCUSDT/1s/BTCUSDT-1s-2024-01-01.zip"] if self.quick
                        else ["/data/spot/monthly/klines/BTCUSDT/1s/BTCUSDT-1s-2024-01.zip"])
        rows = []
        ratio_line = ""
        # Instructions are counted over one day and over two (under callgrind a process runs some
        # 50× slower): the difference is what a record costs once the process has started.
        ir_rngs = [f"{start}:{day_plus(start, 1)}", f"{start}:{day_plus(start, 2)}"]
        ir_lines: list[str] = []
        ir_rows: list[list[str]] = []
        cases = [("api_trades", trades_rng, trade_files, spacing),
                 ("api_candles_1s", candles_rng, candle_files, 250)]
        for dtype, rng, files, sp in cases:
            ceiling, archive, records, ir = self._archive_runs(s, dtype, rng, files, sp, ir_rngs)
            if "ceiling" in ir and "loader" in ir:
                try:
                    line, fn_rows = instruction_text(f"`{dtype}` archive", ir)
                    ir_lines.append(line)
                    ir_rows += fn_rows
                except BenchError as e:
                    s.failures.append(str(e))
            n = fmt_n(records) if records else "?"
            what = f"{len(files)} {'daily' if '/daily/' in files[0] else 'monthly'} file(s)"
            rows += self._archive_rows(f"`{dtype}`", rng, what, ceiling, archive, records)
            if dtype != "api_trades":
                continue
            # REST at the default budget: bound by the weight budget, so one run says it all.
            broker = sim = None
            name = self.name("s6-rest")
            try:
                broker, sim = self.fresh("--agg-trade-spacing-ms", str(sp))
                r = run_loader(name, self.logs, broker, sim, f"bench-{name}", dtype, rng, records, 1800,
                               RATE_LIMIT_SHARE=loader_default("RATE_LIMIT_SHARE"))
                rows.append([f"loader `{dtype}`, `SOURCE=rest`, default budget", rng, n, fmt_n(r.rate), "",
                             fmt_n(r.records / r.wall), f"{cpu_per_m(r.cpu, r.records):.2f}",
                             f"{r.rss_kb / 1024:.1f} MB", "", "", ""])
                if archive:
                    f = med([x.records / x.wall for x in archive]) / (r.records / r.wall)
                    ratio_line = (f"Aggregate trades, archive ÷ REST, whole process: **{f:,.0f}×** (target ≥ 20×): "
                                  f"{verdict(f >= 20)}. REST made {r.requests:,} requests of weight {r.weight:,} "
                                  f"with {r.r429} × 429.")
            except BenchError as e:
                s.failures.append(str(e))
            finally:
                self.close(broker, sim)
        s.text += [
            f"Aggregate trades of BTCUSDT (TIME_RANGE {trades_rng}, {days} whole day(s), simulator spacing {spacing} ms) "
            f"and 1s candles (TIME_RANGE {candles_rng}: {'one daily file' if self.quick else 'one monthly file'}) "
            "from the simulator's data.binance.vision layout over loopback: zips checked against their CHECKSUM, "
            "downloaded ahead while earlier files publish, read from disk. Ceiling as in scenario 1 (same records, "
            f"same producer settings). {self.fast_runs} run(s) each for ceiling and archive, alternating, fresh "
            "broker per run; the zips are built by the simulator before any timing. *Records/s*: the loader's "
            "summary line; *whole process*: records / wall time (compared with the ceiling's *with Kafka "
            "connection*). *CPU s / 10⁶ records* as in scenario 1 (loader ÷ ceiling in brackets). Peak RSS of "
            "the whole process. The aggregate-trade span over REST (`SOURCE=rest`) at "
            f"the default budget (`RATE_LIMIT_SHARE` {loader_default('RATE_LIMIT_SHARE')} of 6,000 weight a minute; "
            "aggTrades weigh 4 per 1,000) is run once: it is bound by the budget, not by the machine.",
            "",
            table(["contestant", "range", "records", "records/s (median)", "min–max", "records/s, whole process",
                   "CPU s / 10⁶ records", "peak RSS", "vs ceiling (summary / whole)", "target", "result"], rows),
            "",
            ratio_line,
            "",
            *instruction_section_text(f"TIME_RANGE {ir_rngs[0]} and {ir_rngs[1]}", ir_lines, ir_rows),
        ]
        s.text += self._bybit_archive(s)
        s.text += self._okx_archive(s)
        return s

    def _bybit_archive(self, s: Section) -> list[str]:
        """Bybit's linear trades from its archive (gzip CSV, HEAD with an md5 ETag, the gzip
        stream read once for its CRCs before any row is published) beside the ceiling publishing
        the same records."""
        rng, spacing = ("2024-01-01:2024-01-02", 1000) if self.quick else ("2024-01-01:2024-01-04", 250)
        start = rng.split(":")[0]
        days = (ms_of(rng.split(":")[1]) - ms_of(start)) // DAY_MS
        files = [f"/bybit-archive/trading/BTCUSDT/BTCUSDT{day_plus(start, d)}.csv.gz" for d in range(days)]
        ceiling, loader, records, _ = self._archive_runs(s, "api_raw_trades", rng, files, spacing, [], "bybit")
        rows = self._archive_rows("Bybit `api_raw_trades`", rng, f"{days} daily file(s)", ceiling, loader,
                                  records)
        if len(rows) < 2:
            return []
        return [
            "",
            f"Bybit (`EXCHANGE=bybit`, `MARKET=linear`): trades of BTCUSDT (TIME_RANGE {rng}, {days} whole day(s), "
            f"simulator spacing {spacing} ms) from the simulator's Bybit archive over loopback: one `.csv.gz` a "
            "day, asked with `HEAD` (size and md5 ETag), downloaded and checked against both, read once through "
            "for gzip's CRCs and its first and last rows before any row is published, then parsed and keyed by "
            "time rank. The ceiling publishes the same records (same keys, same bytes, same producer settings). "
            f"{self.fast_runs} run(s) each, alternating, fresh broker per run; columns as above.",
            "",
            table(["contestant", "range", "records", "records/s (median)", "min–max", "records/s, whole process",
                   "CPU s / 10⁶ records", "peak RSS", "vs ceiling (summary / whole)", "target", "result"], rows),
        ]

    def _okx_archive(self, s: Section) -> list[str]:
        """OKX's swap trades from its archive (a zip a day of UTC+8, HEAD with an md5 ETag, the
        CSV read once for its CRC-32 before any row is published) beside the ceiling publishing
        the same records."""
        rng, spacing = ("2024-01-01:2024-01-02", 1000) if self.quick else ("2024-01-01:2024-01-04", 250)
        start = rng.split(":")[0]
        days = (ms_of(rng.split(":")[1]) - ms_of(start)) // DAY_MS
        inst = "BTC-USDT-SWAP"
        # A UTC day is the end of one file of UTC+8 and the start of the next: days + 1 files.
        files = [f"/okx-archive/cdn/okex/traderecords/trades/daily/{day_plus(start, d).replace('-', '')}/"
                 f"{inst}-trades-{day_plus(start, d)}.zip" for d in range(days + 1)]
        ceiling, loader, records, _ = self._archive_runs(s, "api_raw_trades", rng, files, spacing, [], "okx",
                                                         symbol=inst)
        rows = self._archive_rows("OKX `api_raw_trades`", rng, f"{days + 1} daily file(s)", ceiling, loader,
                                  records)
        if len(rows) < 2:
            return []
        return [
            "",
            f"OKX (`EXCHANGE=okx`, `MARKET=swap`): trades of {inst} (TIME_RANGE {rng}, simulator spacing "
            f"{spacing} ms) from the simulator's OKX archive over loopback: one zip a day of UTC+8, so the "
            f"{days} UTC day(s) are read from {days + 1} files, the first and the last in part (their other rows "
            "are read and skipped); each asked with `HEAD` (size and md5 ETag), downloaded and checked against "
            "both, its CSV read once through for the zip's CRC-32 before any row is published, then parsed and "
            "keyed by time rank. The ceiling publishes the same records. "
            f"{self.fast_runs} run(s) each, alternating, fresh broker per run; columns as above.",
            "",
            table(["contestant", "range", "records", "records/s (median)", "min–max", "records/s, whole process",
                   "CPU s / 10⁶ records", "peak RSS", "vs ceiling (summary / whole)", "target", "result"], rows),
        ]

    # -- 7 -------------------------------------------------------------------------------------
    def futures_pages(self) -> Section:
        """8: futures klines are charged by `limit`; the loader's 499-candle pages against 1,000 and
        1,500 under a squeezed USD-M budget."""
        s = Section("8. Futures kline pages under the USD-M budget")
        limit, window_ms = 100, 1000
        rng = "2024-01-01:2024-02-01" if self.quick else "2023-01-01:2023-07-01"
        n = candles_in(rng, 60_000)
        pages = ["default (499)", "1000", "1500"]
        results: dict[str, list] = {x: [] for x in pages}
        verified = False
        for i in range(self.slow_runs):
            for page in pages:
                broker = sim = None
                name = self.name(f"s8-page{page.split()[0]}")
                topic = f"bench-{name}"
                try:
                    broker, sim = self.fresh("--usdm-weight-limit", str(limit), "--weight-window-ms", str(window_ms))
                    extra = {"MARKET": "usdm", "BINANCE_FAPI_URL": sim.url + "/usdm"}
                    if page.isdigit():
                        extra["PAGE_LIMIT"] = page
                    lr = run_loader(name, self.logs, broker, sim, topic, "api_candles_1m", rng, n, 1800, **extra)
                    st = sim.stats()["per_market"]["usdm"]
                    results[page].append({"seconds": lr.seconds, "weight": st["weight_total"],
                                          "r429": st["responses_429"], "r418": st["responses_418"],
                                          "requests": st["requests"]})
                    if not verified:
                        verify(name, self.logs, broker, topic, rng, n)
                        verified = True
                except BenchError as e:
                    s.failures.append(str(e))
                finally:
                    self.close(broker, sim)
        rows = []
        base = med([r["seconds"] for r in results["1500"]]) if results["1500"] else float("nan")
        for page in pages:
            rs = results[page]
            if not rs:
                continue
            secs = [r["seconds"] for r in rs]
            r429 = sum(r["r429"] for r in rs) + sum(r["r418"] for r in rs)
            speedup = base / med(secs)
            target = "≥ 1.4× the 1,500 pages, 0 × 429" if page.startswith("default") else "0 × 429"
            ok = r429 == 0 and (speedup >= 1.4 if page.startswith("default") else True)
            rows.append([f"`PAGE_LIMIT` {page}", fmt_n(n), fmt_s(med(secs)), fmt_range(secs, fmt_s),
                         f"{med([r['requests'] for r in rs]):.0f}", f"{med([r['weight'] for r in rs]):,.0f}",
                         f"{n / med([r['weight'] for r in rs]):.0f}", f"{speedup:.2f}×", str(r429), target,
                         verdict(ok)])
        s.text += [
            f"USD-M futures charge klines by `limit` (1 below 100, 2 below 500, 5 up to 1,000, 10 above). The "
            f"simulator's USD-M budget is squeezed to {limit} weight per {window_ms} ms (the loader's default "
            f"share, 0.5, leaves {limit // 2}); the loader loads {rng} of 1m candles ({n:,}) with its default "
            f"page of 499 and with `PAGE_LIMIT` 1000 and 1500. {self.slow_runs} run(s) each, alternating; fresh "
            "simulator and broker per run. *Speed-up* is the 1,500-page median time ÷ this one's.",
            "",
            table(["contestant", "records", "seconds (median)", "min–max", "requests", "weight charged",
                   "candles per weight", "speed-up", "429 + 418", "target", "result"], rows),
        ]
        return s

    def resume_cost(self) -> Section:
        s = Section("7. The cost of a resume")
        start = "2024-01-01"
        rng = f"{start}:{day_plus(start, 3 if self.quick else 116)}"
        n = candles_in(rng, 1000)
        rows = []
        broker = sim = None
        try:
            broker, sim = self.fresh("--weight-limit", "100000000")
            topic = f"bench-{self.name('s7-topic')}"
            # Fill the topic: the whole range, as a finished earlier attempt left it.
            run_loader(self.name("s7-fill"), self.logs, broker, sim, topic, "api_candles_1s", rng, n, 1800,
                       RATE_LIMIT_SHARE="1", RESUME="false")
            resumed, fresh = [], []
            for i in range(self.fast_runs):
                for who in ("resume", "fresh"):
                    name = self.name(f"s7-{who}")
                    env = base_env()
                    if who == "resume":
                        # The same job again: it finds the last record and has nothing left to do.
                        env.update({"SYMBOL": "BTCUSDT", "TYPE": "api_candles_1s", "TIME_RANGE": rng,
                                    "KAFKA_TOPIC": topic})
                    else:
                        # The fixed cost of any job start, for comparison: a one-second range
                        # into a new topic.
                        env.update({"SYMBOL": "BTCUSDT", "TYPE": "api_candles_1s",
                                    "TIME_RANGE": "2024-01-01T00:00:00Z:2024-01-01T00:00:01Z",
                                    "KAFKA_TOPIC": f"bench-{name}"})
                    env.update({"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "BINANCE_API_URL": sim.url,
                                "ARCHIVE_URL": sim.url, "SOURCE": "rest", "METRICS_PORT": "0", "RATE_LIMIT_SHARE": "1"})
                    r = run_timed(name, [str(LOADER)], env, self.logs, 600)
                    if who == "resume":
                        m = re.search(r"messages were in the topic, (\d+) read to find it in (\d+) ms", r.stdout)
                        if not m or "published 0 records" not in r.stdout:
                            raise BenchError(f"{name}: the second run did not resume at the end: {r.stdout[-400:]!r}")
                        resumed.append((r.wall, int(m.group(1)), int(m.group(2)), r.rss_kb))
                    else:
                        fresh.append(r.wall)
            walls = [x[0] for x in resumed]
            looks = [x[2] / 1000 for x in resumed]
            rows.append(["resume on the full topic", fmt_n(n), fmt_n(resumed[0][1]), fmt_s(med(looks)),
                         fmt_range(looks, fmt_s), fmt_s(med(walls)), f"{med([x[3] for x in resumed]) / 1024:.0f} MB"])
            rows.append(["a job start, nothing to resume (baseline)", "1", "0", "", "", fmt_s(med(fresh)), ""])
            extra = (f"A resume adds **{med(walls) - med(fresh):+.2f} s** to a job's start on a topic of {n:,} records "
                     f"(it reads {resumed[0][1]:,} of them).")
        except BenchError as e:
            s.failures.append(str(e))
            extra = ""
        finally:
            self.close(broker, sim)
        s.text += [
            f"A topic holding a finished load of 1s candles (TIME_RANGE {rng}, {n:,} records, one partition, "
            "memory storage), and the same job started again with `RESUME=true` (the default): it reads the "
            "partition's tail backwards until it finds BTCUSDT's last record, then has nothing left to load. "
            "*Lookup*: the loader's own timing of that search (its summary line); *whole process*: wall time of "
            f"the run. The baseline starts a job with a one-second range into a new topic. {self.fast_runs} run(s) "
            "each, alternating.",
            "",
            table(["run", "records in topic", "messages read", "lookup (median)", "min–max", "whole process (median)",
                   "peak RSS"], rows),
            "",
            extra,
        ]
        return s


# ------------------------------------------------------------------------------------------------

    # -- 9 -------------------------------------------------------------------------------------
    def live_stream(self) -> Section:
        """CPU per streamed message (a busy stream) and per minute (a quiet one), beside the ceiling."""
        s = Section("9. Live streams: CPU per message")
        seconds = 5 if self.quick else 20
        rounds = self.slow_runs
        # Tens of thousands of messages a second: 24 symbols of one aggregate trade a millisecond each.
        symbols = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "LTCUSDT",
                   *(f"{''.join(t)}USDT" for t in itertools.islice(itertools.product("ABCDEFGHJK", repeat=3), 16))]
        spacing = {"busy": 1, "quiet": 1000}  # simulator spacing: 1 ms, 1 s a symbol
        n_ms = len(symbols) * seconds * 1000
        t0 = ms_of("2024-01-01")
        streams = "/".join(f"{sym.lower()}@aggTrade" for sym in symbols)

        def ceiling(mode: str, rate: float) -> dict:
            broker = sim = None
            name = self.name(f"s9-ceiling-{mode}")
            try:
                if mode == "pipe":
                    # The bare pipe reads the simulator's own stream of the busy run's symbols.
                    broker, sim = self.fresh("--agg-trade-spacing-ms", "1")
                    extra = ["--ws-url", f"{sim.url.replace('http://', 'ws://', 1)}/stream?streams={streams}"]
                else:
                    broker = Broker(self.logs)
                    extra = ["--rate", f"{rate:.0f}"] if mode == "paced" else []
                run = run_timed(name, [str(CEILING), "--kafka-bootstrap-servers", broker.bootstrap, "--kafka-topic",
                                       f"bench-{name}", "--type", "api_trades", "--symbol", "BTCUSDT",
                                       "--agg-trade-spacing-ms", "1", "--time-range", f"{t0}:{t0 + n_ms}", *extra],
                                base_env(), self.logs, 900)
                return json.loads(run.stdout.strip().splitlines()[-1])
            finally:
                self.close(broker, sim)

        # (loader result, WebSocket messages the simulator sent it) per case, and the pipe's output, per round.
        loader: dict[str, list[tuple[LoaderResult, int]]] = {"busy": [], "quiet": []}
        pipes: list[dict] = []
        for _ in range(rounds):
            try:
                for label in ("busy", "quiet"):
                    broker = sim = None
                    name = self.name(f"s9-{label}")
                    topic = f"bench-{name}"
                    try:
                        broker, sim = self.fresh("--agg-trade-spacing-ms", str(spacing[label]))
                        # Starts a few seconds ahead: the job waits for its range, connected and idle.
                        start = int(time.time() * 1000) + 3000
                        rng = f"{start}:{start + seconds * 1000}"
                        lr = run_loader(name, self.logs, broker, sim, topic, "ws_aggtrades", rng, None,
                                        seconds + 120, SYMBOL=",".join(symbols),
                                        BINANCE_WS_URL=sim.url.replace("http://", "ws://", 1))
                        received = int(sim.stats()["ws_messages_sent"])
                        verify(name, self.logs, broker, topic, rng, lr.records)
                        loader[label].append((lr, received))
                    finally:
                        self.close(broker, sim)
                pipes.append(ceiling("pipe", 0))
            except BenchError as e:
                s.failures.append(str(e))
                break
        rows = []
        for label in ("busy", "quiet"):
            if not loader[label]:
                continue
            lrs = [lr for lr, _ in loader[label]]
            per_m = [cpu_per_m(lr.cpu, lr.records) for lr in lrs] if label == "busy" else []
            rows.append([f"loader `ws_aggtrades`, {len(symbols)} symbols, {label}",
                         fmt_n(med([lr.records for lr in lrs])), fmt_n(med([m for _, m in loader[label]])),
                         fmt_n(med([lr.records for lr in lrs]) / seconds), f"{med([lr.cpu for lr in lrs]):.2f}",
                         f"{med([lr.cpu / lr.wall * 60 for lr in lrs]):.1f}",
                         f"{med(per_m):,.2f}" if per_m else ""])
        lines: list[str] = []
        msg: list[float] = []
        rate = med([lr.records for lr, _ in loader["busy"]]) / seconds if loader["busy"] else n_ms / seconds
        if pipes:
            cm = [cpu_per_m(p["cpu_seconds"], p["records"]) for p in pipes]
            rows.append([f"ceiling `api_trades`, the pipe: reads the stream of the {len(symbols)} symbols, "
                         "publishes a record a frame", fmt_n(med([p["records"] for p in pipes])),
                         fmt_n(med([p["records"] for p in pipes])), fmt_n(rate),
                         f"{med([p['cpu_seconds_with_connect'] for p in pipes]):.2f}", "",
                         f"{med([cpu_per_m(p['cpu_seconds_with_connect'], p['records']) for p in pipes]):,.2f}"])
        if pipes and len(loader["busy"]) == len(loader["quiet"]) == len(pipes):
            # Startup and the idle job's own cost (timers, the control listener) are in both loader
            # runs: their difference is what the further messages cost. Per message the loader
            # received (the pipe receives the same frames); per record too, which also carries the
            # messages received before and after the range (parsed, not published).
            per_msg, per_rec = [], []
            for (b, bm), (q, qm), c in zip(loader["busy"], loader["quiet"], cm):
                msg.append(cpu_per_m(b.cpu - q.cpu, bm - qm))
                per_msg.append(msg[-1] / c)
                per_rec.append(cpu_per_m(b.cpu - q.cpu, b.records - q.records) / c)
            self.against_ceiling.append(("live `ws_aggtrades`, a further message against the pipe", None,
                                         med(per_msg)))
            lines.append(
                f"A further message (busy run minus quiet run of the same round: startup and the idle job's timers "
                f"cancel; per WebSocket message the simulator sent the loader): {med(msg):,.2f} CPU s / 10⁶ against "
                f"the pipe's {med(cm):,.2f} once connected (it receives the same frames and publishes a record for "
                f"each, parsing nothing): **{med(per_msg):.2f}×** ({fmt_range(per_msg, fmt_s)} over {len(per_msg)} "
                f"round(s), the median of each round's ratio) (target ≤ 1.3×): {verdict(med(per_msg) <= 1.3)}. "
                f"Per record published instead (the messages before and after the range are parsed too, not "
                f"published): {med(per_rec):.2f}× ({fmt_range(per_rec, fmt_s)}).")
        busy_cpu = med([cpu_per_m(lr.cpu, lr.records) for lr, _ in loader["busy"]]) if loader["busy"] else None
        for mode in ("fast", "paced"):
            try:
                out = ceiling(mode, rate)
            except BenchError as e:
                s.failures.append(str(e))
                continue
            c = cpu_per_m(out["cpu_seconds_with_connect"], out["records"])
            what = {"fast": "as fast as it can", "paced": f"paced to {fmt_n(rate)} records/s"}[mode]
            rows.append([f"ceiling `api_trades`, {what}", fmt_n(out["records"]), "",
                         "" if mode == "fast" else fmt_n(rate), f"{out['cpu_seconds_with_connect']:.2f}", "",
                         f"{c:,.2f}"])
            if busy_cpu is not None:
                if mode == "paced":
                    further = ""
                    if msg:
                        further = (f"; a further message {med(msg) / cpu_per_m(out['cpu_seconds'], out['records']):.2f}× "
                                   "its CPU once connected")
                    lines.append(
                        f"Against the ceiling paced to the same rate (it reads no stream, so it is not the bar): a busy "
                        f"stream's record, whole process, costs the loader {busy_cpu / c:.2f}× the CPU it spends to "
                        f"publish a record{further}.")
                else:
                    lines.append(f"Against the ceiling publishing as fast as it can: {busy_cpu / c:.1f}×.")
        s.text += [
            f"`ws_aggtrades` of {len(symbols)} symbols on one connection for {seconds} s of TIME_RANGE (starting 3 s "
            "after launch, so the job also waits connected), from the simulator's stream (aggregate trades every "
            f"1 ms a symbol: busy; every 1 s: quiet) into the broker; {rounds} round(s) of busy, quiet and the pipe, "
            "alternating, fresh simulator and broker each run, each loader topic passes `verify`; medians. "
            "*Messages received*: WebSocket messages the simulator sent (the loader connects before its range and "
            "reads a little past its end, so it receives more than it publishes). *CPU s*: user + system of the "
            "whole loader process (`/usr/bin/time`), startup included; *CPU s a minute*: the same over its wall time. "
            "The pipe (`examples/ceiling.rs --ws-url`): the ceiling reading the simulator's stream of the same "
            "symbols over one WebSocket connection and publishing one of its records for every frame, parsing "
            "nothing: what receiving and publishing a stream costs at the least, the bar the target is judged on. "
            "And the ceiling as in scenario 1 (once), publishing as many aggregate trades as the busy stream "
            "delivered, as fast as it can and paced to the busy stream's rate (`--rate`: a tick's records every "
            "100 ms, as the loader hands a stream's records to its producer).",
            "",
            table(["contestant", "records", "messages received", "records/s", "CPU s", "CPU s a minute",
                   "CPU s / 10⁶ records"], rows),
            "",
            *lines,
        ]
        return s

    def summary(self) -> Section | None:
        """Every path measured against its ceiling in this run, judged as one target."""
        if not self.against_ceiling:
            return None
        s = Section("Summary: every path against the ceiling")
        rows = []
        for path, whole, cpu in self.against_ceiling:
            ok = (whole is not None and whole >= 0.85) or cpu <= 1.3
            rows.append([path, "" if whole is None else f"{whole:.0%}", f"{cpu:.2f}×",
                         "≥ 85% whole process, or CPU ≤ 1.3×", verdict(ok)])
        s.text += [
            "From the scenarios above, this run: the loader's whole process against the ceiling's with its Kafka "
            "connection (records a second), and the loader's CPU seconds per record over the ceiling's (for a live "
            "stream: a further message, per message received, over the pipe's; it has no rate to compare). The "
            "loader shares the 2 CPUs with the simulator it reads from, which the ceiling does not, so where the "
            "rate falls short the CPU per record is the bar.",
            "",
            table(["path", "whole process ÷ ceiling", "CPU per record ÷ ceiling", "target", "result"], rows),
            "",
        ]
        return s

    # -- 10 ------------------------------------------------------------------------------------
    def many_symbols(self) -> Section:
        """10: what a job's memory and disk hold as the number of symbols grows. ARCHIVE_CONCURRENCY and
        FETCH_CONCURRENCY bound the whole job, so many symbols should peak like one symbol with as many
        records (a longer run fills librdkafka's queue and the allocator's arenas further, so the
        comparison is at equal records)."""
        s = Section("10. Many symbols: memory and disk")
        counts = [8] if self.quick else [32, 100]
        n_max = max(counts)
        bases = ["".join(t) for t in itertools.product("ABCDEFGHJK", repeat=3)][:n_max]
        symbols_of = lambda n: ["BTCUSDT"] if n == 1 else [f"{b}USDT" for b in bases[:n]]
        start = "2024-01-01"
        # (type, source, per-symbol range of the many-symbol jobs, the one-symbol range with as many
        # records as the largest of them)
        rest_hours = 3 if self.quick else 12
        cases = [
            ("api_trades", "archive", f"{start}:{day_plus(start, 1)}", f"{start}:{day_plus(start, n_max)}"),
            ("api_candles_1s", "rest", f"{ms_of(start)}:{ms_of(start) + rest_hours * 3_600_000}",
             f"{ms_of(start)}:{ms_of(start) + n_max * rest_hours * 3_600_000}"),
        ]
        archive_conc, fetch_conc = loader_default("ARCHIVE_CONCURRENCY"), loader_default("FETCH_CONCURRENCY")
        rows = []
        verdicts = []
        for dtype, source, rng, one_rng in cases:
            peaks: dict[int, float] = {}
            for n in (1, *counts):
                broker = sim = None
                name = self.name(f"s10-{source}-{n}")
                topic = f"bench-{name}"
                disk_dir = self.logs / f"{name}.archive-dir"
                disk_dir.mkdir()
                peak_disk, largest, done = [0], [0], threading.Event()

                def watch():
                    # The downloads in ARCHIVE_DIR, every 10 ms (a file lives there from its download
                    # until it is published, far longer than that).
                    while not done.is_set():
                        sizes = []
                        for e in os.scandir(disk_dir):
                            try:
                                sizes.append(e.stat().st_size)
                            except FileNotFoundError:
                                pass
                        peak_disk[0] = max(peak_disk[0], sum(sizes))
                        largest[0] = max([largest[0], *sizes])
                        done.wait(0.01)

                watcher = threading.Thread(target=watch, daemon=True)
                r = one_rng if n == 1 else rng
                try:
                    broker, sim = self.fresh("--agg-trade-spacing-ms", "1000", "--weight-limit", "100000000")
                    watcher.start()
                    lr = run_loader(name, self.logs, broker, sim, topic, dtype, r, None, 1800,
                                    SYMBOL=",".join(symbols_of(n)), SOURCE=source, ARCHIVE_DIR=str(disk_dir),
                                    RATE_LIMIT_SHARE="1")
                    done.set()
                    watcher.join()
                    verify(name, self.logs, broker, topic, r, lr.records)
                    peaks[n] = lr.rss_kb / 1024
                    disk = ""
                    if source == "archive":
                        bound = int(archive_conc) * largest[0]
                        disk = (f"{peak_disk[0] / 2**20:.1f} MB (largest file {largest[0] / 2**20:.1f} MB; "
                                f"{verdict(peak_disk[0] <= bound)} ≤ {archive_conc} files)")
                    rows.append([f"`{dtype}`, `SOURCE={source}`", str(n), readable_range(r), fmt_n(lr.records),
                                 f"{lr.rss_kb / 1024:.1f} MB", disk, fmt_s(lr.wall)])
                except BenchError as e:
                    s.failures.append(str(e))
                finally:
                    done.set()
                    self.close(broker, sim)
                    shutil.rmtree(disk_dir, ignore_errors=True)
            if 1 in peaks and n_max in peaks:
                d = peaks[n_max] - peaks[1]
                verdicts.append(f"`SOURCE={source}`: {n_max} symbols peak at {peaks[n_max]:.1f} MB, {d:+.1f} MB against one "
                                f"symbol with as many records (about {d * 1024 / (n_max - 1):.0f} KB a further symbol); "
                                f"target: under the manifests' memory request of {MANIFEST_MEMORY_REQUEST_MB} MiB: "
                                f"{verdict(peaks[n_max] < MANIFEST_MEMORY_REQUEST_MB * 1.048576)}.")
        s.text += [
            f"One symbol, then {' and '.join(map(str, counts))} in one job, at the defaults (`ARCHIVE_CONCURRENCY` "
            f"{archive_conc}, `FETCH_CONCURRENCY` {fetch_conc}), which bound the whole job: aggregate trades from "
            "the archive (simulator spacing 1000 ms: a daily file per symbol; the one symbol reads as many records "
            "from monthly and daily files) and 1s candles over REST (no rate limit). The one-symbol job has as many "
            f"records as the {n_max}-symbol one, since a longer run fills librdkafka's queue and the allocator's "
            "arenas further whatever the number of symbols. Peak RSS of the whole process (`/usr/bin/time`); peak of "
            "`ARCHIVE_DIR` sampled every 10 ms (the downloads waiting to be published: at most "
            "`ARCHIVE_CONCURRENCY` files whatever the number of symbols). One run each, fresh simulator and broker; "
            "every topic passes `verify`. The manifests' memory limit and `/tmp` size come from these figures "
            "(`deploy/k8s/base/job.yaml`).",
            "",
            table(["job", "symbols", "range (each symbol)", "records", "peak RSS", "peak ARCHIVE_DIR", "wall (s)"], rows),
            "",
            *verdicts,
        ]
        return s


def sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine() -> list[str]:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    commit = sh(["git", "rev-parse", "--short=12", "HEAD"]) or "?"
    dirty = sh(["git", "status", "--porcelain", "--untracked-files=no"])
    import confluent_kafka
    return [
        f"- Machine: {os.cpu_count()} CPUs ({cpu}), {mem} memory, {platform.system()} {platform.release()}; "
        f"load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- Commit: `{commit}`{' with uncommitted changes' if dirty else ''}",
        f"- Date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Tools: {sh(['rustc', '--version'])}; broker {sh([os.environ['NISSHI_BIN'], '--version'])} (memory "
        f"storage, loopback); Python {platform.python_version()} with confluent-kafka {confluent_kafka.__version__} "
        f"(librdkafka {confluent_kafka.libversion()[0]})",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small counts, one run each (a few minutes)")
    ap.add_argument("--runs", type=int, help="runs per contestant (default: 5 fast, 3 slow; 1 with --quick)")
    ap.add_argument("--only", help="comma-separated scenario numbers, e.g. 1,4 (the table is then not written to BENCHMARKS.md)")
    ap.add_argument("--output", help="markdown file to write (default: BENCHMARKS.md, or bench/out/BENCHMARKS-quick.md with --quick)")
    a = ap.parse_args()

    for path in (LOADER, SIM, CEILING):
        if not path.exists():
            print(f"bench: {path} is missing: run bench/run (it builds the release binaries)", file=sys.stderr)
            return 1
    out_dir = BENCH / "out"
    logs = out_dir / ("logs-quick" if a.quick else "logs")
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    if a.output:
        output = Path(a.output)
    elif a.quick or a.only:
        output = out_dir / ("BENCHMARKS-quick.md" if a.quick else "BENCHMARKS-partial.md")
    else:
        output = ROOT / "BENCHMARKS.md"

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)

    head = machine()
    bench = Bench(a.quick, logs, a.runs)
    scenarios = [bench.throughput, bench.python_baselines, bench.latency, bench.rate_budget, bench.memory,
                 bench.archive, bench.resume_cost, bench.futures_pages, bench.live_stream, bench.many_symbols]
    wanted = {int(x) for x in a.only.split(",")} if a.only else set(range(1, len(scenarios) + 1))
    sections: list[Section] = []
    started = time.time()
    try:
        for i, scenario in enumerate(scenarios, 1):
            if i not in wanted:
                continue
            t0 = time.time()
            print(f"bench: scenario {i} ...", file=sys.stderr, flush=True)
            try:
                sec = scenario()
            except BenchError as e:  # a scenario that could not even start
                sec = Section(f"{i}. (failed)", failures=[str(e)])
            sections.append(sec)
            print(sec.render(), flush=True)
            print(f"bench: scenario {i} took {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    finally:
        cleanup()
    if (summary := bench.summary()) is not None:
        sections.append(summary)
    total = time.time() - started
    failures = [f for sec in sections for f in sec.failures]
    mode = "`bench/run --quick` (small counts, one run each: a smoke test, not the reference numbers)" \
        if a.quick else "`bench/run`"
    doc = [
        "# Benchmarks",
        "",
        "Generated by " + mode + f" in {total / 60:.1f} minutes; do not edit by hand.",
        "",
        "**Reproduce**: `bench/run` (full, about 50 minutes on 2 cores: installs what it needs, builds the release "
        "binaries, writes this file) or `bench/run --quick` (a few minutes, one small run of every scenario, "
        "writes `bench/out/BENCHMARKS-quick.md`; CI runs it). Logs of every run go to `bench/out/`. Everything "
        "runs on this machine over loopback: the project's own exchange simulator (`exchange-sim`), the nisshi "
        "Kafka-compatible broker (memory storage), the loader, `examples/ceiling.rs` and the Python baselines in "
        "`bench/baselines/`. Medians of several runs with min–max; contestants alternate run by run. These are "
        "benchmarks, not tests: a missed target is reported here, and only a crash or a failed check makes "
        "`bench/run` fail.",
        "",
        *head,
        "",
        *(s.render() for s in sections),
    ]
    doc += [f"Load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (the machine may be "
            "shared with other work; the min–max columns show how much that moved the numbers).", ""]
    if failures:
        doc += ["## Failures", "", *[f"- {f}" for f in failures], ""]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(doc))
    print(f"bench: wrote {output} ({total:.0f} s)", file=sys.stderr)
    if failures:
        print(f"bench: {len(failures)} failure(s):", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        cleanup()
        print("bench: interrupted", file=sys.stderr)
        sys.exit(130)
