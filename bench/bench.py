#!/usr/bin/env python3
"""Tessera vs redis-server, side by side, with redis-benchmark.

Starts a release-built `tessera server` and a real `redis-server` on free loopback ports, runs
redis-benchmark against each in turn (interleaved, several rounds, median per figure), and
prints ops/s, p50 and p99 latency and the Tessera/Redis ratio for

    redis-benchmark -t set,get,incr,mset -c 50 -r 1000000 -d 16   at -P 1 and -P 16

then memory: used_memory and RSS after loading 1M keys with 16-byte values, per key, measured
11 s after the load (past jemalloc's decay time, so pages freed after the load are returned).

`--suite types` measures the data types instead: redis-benchmark's
`-t lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,lrange_100,lrange_300,mset`, a sorted set
and a hash growing to 1M random members, XADD and XRANGE of 10 entries on a stream, and memory
per element of 1M-member hashes, sets and sorted sets, of 100k hashes of 10 fields and of a
stream of 1M one-field entries.

Each test is its own redis-benchmark run, so the table also gives the server's CPU time per
request (user + system, from /proc): at -P 1 on two cores redis-benchmark is the bottleneck and
ops/s ratios wander by +-10% between runs, while CPU per request is the server's own cost.

`--suite scripting` measures Lua scripts: EVALSHA and EVAL of a script that runs three
commands (SET, INCR, GET on two random keys), the issue 7 target.

`--aof always|everysec|no` runs both servers with `appendonly yes` and that `appendfsync`
(the persistence targets: `--aof everysec --tests set`); their data directories are temporary
folders in the clone (or $BENCH_DIR), on a real disk rather than /tmp.

usage: bench/bench.py [--suite strings|types|scripting] [--rounds 3] [--requests 200000]
                      [--pipeline-requests 2000000] [--keys 1000000] [--no-build]
                      [--skip-memory] [--skip-throughput] [--aof MODE] [--tests LIST]

It prints figures; it is not a test and never fails on a figure.
"""
import argparse
import csv
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/tessera/target"))
TESTS = "set,get,incr,mset"
TYPE_TESTS = "lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,lrange_100,lrange_300,mset"
# Custom workloads: a name and the command redis-benchmark sends (random members up to 1M).
WORKLOADS = [
    ("ZADD_1M", ["ZADD", "bench:zset", "__rand_int__", "member:__rand_int__"]),
    ("HSET_1M", ["HSET", "bench:hash", "field:__rand_int__", "__rand_int__"]),
    ("XADD", ["XADD", "bench:stream", "*", "field", "__rand_int__"]),
    ("XRANGE_10", ["XRANGE", "bench:stream", "-", "+", "COUNT", "10"]),
]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, kind, aof=None):
        self.kind = kind
        self.port = free_port()
        # On the disk the data directory lives on (the clone's), not a RAM disk like /tmp can be.
        self.tmp = tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", ROOT))
        appendonly = ["--appendonly", "yes", "--appendfsync", aof] if aof else ["--appendonly", "no"]
        if kind == "tessera":
            cmd = [os.path.join(TARGET, "release", "tessera"), "server", "--port", str(self.port),
                   "--loglevel", "warning", "--dir", self.tmp.name, "--save", "", *appendonly]
        else:
            cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--dir", self.tmp.name, "--loglevel", "warning", *appendonly]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"{kind} did not start")

    def cli(self, *args):
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                             text=True, check=True)
        return out.stdout

    def info(self, field):
        for line in self.cli("INFO", "memory").splitlines():
            if line.startswith(field + ":"):
                return int(line.split(":", 1)[1])
        raise SystemExit(f"{self.kind}: no {field} in INFO memory")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.tmp.cleanup()


def cpu_ticks(server):
    """User plus system CPU the server process has used, in clock ticks."""
    with open(f"/proc/{server.proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def run_benchmark(server, pipeline, requests, extra):
    """Runs one redis-benchmark invocation: {test: (rps, p50, p99, server CPU us/request)}."""
    before = cpu_ticks(server)
    out = subprocess.run(
        ["redis-benchmark", "-p", str(server.port), "-c", "50", "-r", "1000000", "-d", "16",
         "-n", str(requests), "-P", str(pipeline), "--csv", *extra],
        capture_output=True, text=True, check=True).stdout
    cpu_us = (cpu_ticks(server) - before) * 1e6 / CLK_TCK / requests
    rows = {}
    for row in csv.DictReader(io.StringIO(out)):
        name = row["test"].split(" ")[0]
        rows[name] = (float(row["rps"]), float(row["p50_latency_ms"]),
                      float(row["p99_latency_ms"]), cpu_us)
    return rows


# A script of three commands, as job queues and rate limiters run them.
SCRIPT_3CMD = ("redis.call('set', KEYS[1], ARGV[1]) redis.call('incr', KEYS[2]) "
               "return redis.call('get', KEYS[1])")


def benchmark_scripts(server, pipeline, requests):
    server.cli("FLUSHALL")
    sha = server.cli("SCRIPT", "LOAD", SCRIPT_3CMD).strip()
    keys = ["2", "s:__rand_int__", "n:__rand_int__", "value"]
    rows = {}
    for name, command in (("EVALSHA_3CMD", ["EVALSHA", sha, *keys]),
                          ("EVAL_3CMD", ["EVAL", SCRIPT_3CMD, *keys])):
        got = run_benchmark(server, pipeline, requests, command)
        rows[name] = next(iter(got.values()))
    return rows


def benchmark(server, pipeline, requests, suite, tests=None):
    if suite == "scripting":
        return benchmark_scripts(server, pipeline, requests)
    server.cli("FLUSHALL")
    tests = tests or (TESTS if suite == "strings" else TYPE_TESTS)
    # One invocation per test, in redis-benchmark's order (the pops find what the pushes left),
    # so each test gets its own server CPU figure.
    rows = {}
    for test in tests.split(","):
        # LRANGE_* runs fill their list with LPUSH first: keep only the test's own row.
        got = run_benchmark(server, pipeline, requests, ["-t", test])
        rows[test.upper()] = got[test.upper()]
    if suite == "strings":
        return rows
    for name, command in WORKLOADS:
        if not name.startswith("XRANGE"):
            server.cli("FLUSHALL")
        got = run_benchmark(server, pipeline, requests, command)
        rows[name] = next(iter(got.values()))
    return rows


def throughput(args):
    results = {}  # (kind, pipeline, test) -> list of (rps, p50, p99)
    servers = {kind: Server(kind, args.aof) for kind in ("tessera", "redis")}
    try:
        for rnd in range(args.rounds):
            order = ["tessera", "redis"] if rnd % 2 == 0 else ["redis", "tessera"]
            for pipeline in (1, 16):
                requests = args.requests if pipeline == 1 else args.pipeline_requests
                for kind in order:
                    print(f"round {rnd + 1}/{args.rounds}: {kind} -P {pipeline}", file=sys.stderr)
                    for test, figures in benchmark(servers[kind], pipeline, requests,
                                                   args.suite, args.tests).items():
                        results.setdefault((kind, pipeline, test), []).append(figures)
    finally:
        for s in servers.values():
            s.stop()

    def med(kind, pipeline, test, i):
        return statistics.median(f[i] for f in results[(kind, pipeline, test)])

    print()
    tests = args.tests or (TESTS if args.suite == "strings" else "EVALSHA,EVAL of a 3-command script"
                           if args.suite == "scripting" else TYPE_TESTS + " + " + ",".join(
        n for n, _ in WORKLOADS))
    print(f"redis-benchmark -t {tests} -c 50 -r 1000000 -d 16, median of {args.rounds} "
          "interleaved rounds" + (f", both with appendonly yes, appendfsync {args.aof}"
                                  if args.aof else ""))
    print("cpu: server CPU (user+system) per request in microseconds; a lower ratio is better")
    header = (f"{'test':<16} {'P':>3} {'tessera ops/s':>14} {'redis ops/s':>12} {'ratio':>6} "
              f"{'t p50':>7} {'r p50':>7} {'t p99':>7} {'r p99':>7} {'p99 ratio':>9} "
              f"{'t cpu':>6} {'r cpu':>6} {'cpu ratio':>9}")
    print(header)
    print("-" * len(header))
    names = sorted({t for (_, _, t) in results}, key=lambda t: list(results).index(
        next(k for k in results if k[2] == t)))
    for pipeline in (1, 16):
        for test in names:
            if ("tessera", pipeline, test) not in results or ("redis", pipeline, test) not in results:
                continue
            t = [med("tessera", pipeline, test, i) for i in range(4)]
            r = [med("redis", pipeline, test, i) for i in range(4)]
            print(f"{test[:16]:<16} {pipeline:>3} {t[0]:>14,.0f} {r[0]:>12,.0f} {t[0] / r[0]:>6.2f} "
                  f"{t[1]:>7.3f} {r[1]:>7.3f} {t[2]:>7.3f} {r[2]:>7.3f} "
                  f"{t[2] / r[2] if r[2] else float('nan'):>9.2f} "
                  f"{t[3]:>6.2f} {r[3]:>6.2f} {t[3] / r[3] if r[3] else float('nan'):>9.2f}")


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def dataset(name, n):
    """Yields RESP commands building a dataset, and returns its element count."""
    if name == "strings":
        for i in range(n):
            yield resp(b"SET", b"key:%012d" % i, b"v" * 16)
    elif name in ("hash", "set", "zset"):
        batch = 100
        for start in range(0, n, batch):
            parts = []
            for i in range(start, min(n, start + batch)):
                if name == "hash":
                    parts += [b"field:%012d" % i, b"value:%08d" % i]
                elif name == "set":
                    parts += [b"member:%012d" % i]
                else:
                    parts += [b"%d" % (i % 10007), b"member:%012d" % i]
            cmd = {"hash": b"HSET", "set": b"SADD", "zset": b"ZADD"}[name]
            yield resp(cmd, b"big:" + name.encode(), *parts)
    elif name == "stream":
        for i in range(n):
            yield resp(b"XADD", b"big:stream", b"%d-0" % (i + 1), b"field", b"value:%08d" % i)
    elif name == "small-hashes":
        for k in range(n):
            parts = []
            for f in range(10):
                parts += [b"field:%d" % f, b"value:%08d" % (k * 10 + f)]
            yield resp(b"HSET", b"small:%08d" % k, *parts)


MEMORY_SETS = {
    "strings": ("keys of 16-byte values", 1.0),
    "hash": ("fields in one hash", 1.0),
    "set": ("members in one set", 1.0),
    "zset": ("members in one sorted set", 1.0),
    "small-hashes": ("hashes of 10 fields (per hash)", 1.0),
    "stream": ("stream entries of one field", 1.0),
}


def memory(args):
    if args.suite == "scripting":
        return
    names = ["strings"] if args.suite == "strings" else ["hash", "set", "zset", "small-hashes",
                                                             "stream"]
    rows = []
    for name in names:
        n = args.keys if name != "small-hashes" else args.keys // 10
        with tempfile.NamedTemporaryFile(suffix=".resp", delete=False) as f:
            path = f.name
            chunk = []
            for c in dataset(name, n):
                chunk.append(c)
                if len(chunk) == 10000:
                    f.write(b"".join(chunk))
                    chunk = []
            f.write(b"".join(chunk))
        try:
            for kind in ("tessera", "redis"):
                s = Server(kind)
                try:
                    before_used, before_rss = s.info("used_memory"), s.info("used_memory_rss")
                    with open(path, "rb") as data:
                        subprocess.run(["redis-cli", "-p", str(s.port), "--pipe"], stdin=data,
                                       capture_output=True, check=True)
                    # Both allocators return freed pages (the load's transient buffers) over
                    # jemalloc's 10 s decay time: measure after it.
                    time.sleep(11)
                    used, rss = s.info("used_memory"), s.info("used_memory_rss")
                    rows.append((name, kind, n, used, rss, (used - before_used) / n,
                                 (rss - before_rss) / n))
                finally:
                    s.stop()
        finally:
            os.unlink(path)
    print()
    print("memory per element (used_memory and RSS growth divided by the element count)")
    header = (f"{'dataset':<14} {'server':<8} {'elements':>9} {'used_memory':>12} {'rss':>12} "
              f"{'used/elem':>9} {'rss/elem':>8}")
    print(header)
    print("-" * len(header))
    for name, kind, n, used, rss, upk, rpk in rows:
        print(f"{name:<14} {kind:<8} {n:>9,} {used:>12,} {rss:>12,} {upk:>9.1f} {rpk:>8.1f}")
    for name in names:
        t = next(r for r in rows if r[0] == name and r[1] == "tessera")
        r = next(r for r in rows if r[0] == name and r[1] == "redis")
        print(f"ratio tessera/redis for {name} ({MEMORY_SETS[name][0]}): used_memory per element "
              f"{t[5] / r[5]:.2f}, rss per element {t[6] / r[6]:.2f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--suite", choices=["strings", "types", "scripting"], default="strings")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=200000, help="requests per test at -P 1")
    p.add_argument("--pipeline-requests", type=int, default=2000000,
                   help="requests per test at -P 16")
    p.add_argument("--keys", type=int, default=1000000)
    p.add_argument("--aof", choices=["always", "everysec", "no"],
                   help="run both servers with appendonly yes and this appendfsync")
    p.add_argument("--tests", help="redis-benchmark tests to run instead of the suite's (-t)")
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--skip-throughput", action="store_true")
    args = p.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "tessera"], cwd=ROOT, check=True,
                       env={**os.environ, "CARGO_TARGET_DIR": TARGET})
    if not args.skip_throughput:
        throughput(args)
    if not args.skip_memory:
        memory(args)


if __name__ == "__main__":
    main()
