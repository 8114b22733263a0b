#!/usr/bin/env python3
"""The proxy's figures (issue 8 targets), one run on this machine.

Starts a control member with a 3-shard database (no replicas, no persistence) and its
`tessera proxy`, a real `redis-server`, and Debian's twemproxy (`nutcracker`) in front of three
standalone `tessera server` processes (twemproxy does not speak Redis Cluster, so its shards are
not in cluster mode; they are the same binary and settings otherwise, `sched-policy batch` as
the supervisor gives its shards included). Then, with
redis-benchmark, median of interleaved rounds:

1. `-t set,get -c 50 -d 16 -r 1000000` at -P 1 and -P 16: the proxy vs redis-server directly
   (targets 0.8x and 0.6x), and the proxy vs twemproxy (target 1.3x).
2. GET with 1000 connections vs 50 through the proxy (target 0.9x), the same for redis-server
   directly (what the load generator itself loses with 1000 connections), with the proxy's
   own CPU per request at both (what the proxy itself loses), and how many connections the
   proxy holds to each shard (target: at most 2 per proxy thread).
3. Added p50 latency at -P 1 with one connection: through the proxy minus directly to a shard
   (target 150 us or less).

CPU per request of each process group (proxy and shards, redis-server, nutcracker and shards)
comes from /proc, and the proxy's own apart.

usage: bench/proxy.py [--rounds 3] [--requests 200000] [--pipeline-requests 1000000]
                      [--threads N (default: half the cores)] [--no-build]
It prints figures; it is not a test and never fails on a figure.
"""
import argparse
import csv
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/tessera/target"))
TESSERA = os.path.join(TARGET, "release", "tessera")
TOKEN = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_range(n):
    while True:
        base = free_port()
        if base + n > 65000:
            continue
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base, base + n - 1


def wait_port(port, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not start on port {port}")


def call(port, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Authorization": f"Bearer {TOKEN}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                          check=True).stdout


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except FileNotFoundError:
            pass
    return total


def pids_listening(ports):
    """Process ids of the processes listening on `ports` (the shards the supervisor started)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    pids = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 6 or not parts[3].rsplit(":", 1)[-1].isdigit():
            continue
        if int(parts[3].rsplit(":", 1)[1]) in ports and "pid=" in parts[5]:
            pids.add(int(parts[5].split("pid=")[1].split(",")[0]))
    return sorted(pids)


class Setup:
    def __init__(self, threads):
        self.tmp = tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR"))
        self.procs = []
        # The control member, its database, and the proxy.
        self.api = free_port()
        lo, hi = free_range(20)
        self.spawn([TESSERA, "control", "--dir", f"{self.tmp.name}/control", "--listen",
                    f"127.0.0.1:{self.api}", "--token", TOKEN, "--memory", "4gb",
                    "--shard-ports", f"{lo}-{hi}"], "control.log")
        deadline = time.time() + 20
        while True:
            try:
                call(self.api, "GET", "/v1/status")
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("the control member did not start")
                time.sleep(0.1)
        call(self.api, "POST", "/v1/cluster/init", {"name": "bench"})
        db = call(self.api, "POST", "/v1/databases",
                  {"name": "bench", "port": free_port(), "shards": 3, "replication": False,
                   "persistence": "none", "memory": 0})
        self.shards = [s["primary"]["port"] for s in db["shards"]]
        for p in self.shards:
            wait_port(p, "a shard")
            deadline = time.time() + 30
            while "cluster_state:ok" not in cli(p, "CLUSTER", "INFO"):
                if time.time() > deadline:
                    raise SystemExit("the shards did not get the configuration")
                time.sleep(0.1)
        self.shard_pids = pids_listening(set(self.shards))
        # The supervisor runs a proxy on the database's endpoint with one thread per core; the
        # benchmark measures its own, with the thread count asked for, on another port (the
        # supervised one stays idle).
        self.proxy_port = free_port()
        self.proxy = self.spawn([TESSERA, "proxy", "--database", "bench", "--control",
                                 f"127.0.0.1:{self.api}", "--token", TOKEN, "--port",
                                 str(self.proxy_port), "--threads", str(threads)], "proxy.log")
        wait_port(self.proxy_port, "the proxy")
        if self.proxy.poll() is not None:
            raise SystemExit("the benchmark's proxy did not start: see proxy.log")
        # redis-server, alone.
        self.redis_port = free_port()
        self.redis = self.spawn(["redis-server", "--port", str(self.redis_port), "--bind",
                                 "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
                                 self.tmp.name], None)
        wait_port(self.redis_port, "redis-server")
        # twemproxy in front of three standalone tessera servers.
        self.plain = []
        for i in range(3):
            port = free_port()
            d = f"{self.tmp.name}/plain{i}"
            os.makedirs(d)
            self.plain.append((port, self.spawn(
                [TESSERA, "server", "--port", str(port), "--dir", d, "--save", "",
                 "--appendonly", "no", "--loglevel", "warning", "--sched-policy", "batch"],
                None)))
            wait_port(port, "a standalone shard")
        self.twem_port = free_port()
        conf = f"{self.tmp.name}/nutcracker.yml"
        with open(conf, "w") as f:
            f.write("bench:\n"
                    f"  listen: 127.0.0.1:{self.twem_port}\n"
                    "  hash: fnv1a_64\n  distribution: ketama\n  redis: true\n"
                    "  auto_eject_hosts: false\n  server_connections: 1\n  servers:\n")
            for i, (port, _) in enumerate(self.plain):
                f.write(f"   - 127.0.0.1:{port}:1 s{i}\n")
        self.twem = self.spawn(["/usr/sbin/nutcracker", "-c", conf, "-s", str(free_port()),
                                "-o", f"{self.tmp.name}/nutcracker.log"], None)
        wait_port(self.twem_port, "nutcracker")

    def spawn(self, cmd, log):
        out = open(f"{self.tmp.name}/{log}", "w") if log else subprocess.DEVNULL
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=out)
        self.procs.append(p)
        return p

    def targets(self):
        """name -> (port, pids whose CPU counts)"""
        return {
            "proxy": (self.proxy_port, [self.proxy.pid] + self.shard_pids),
            "redis": (self.redis_port, [self.redis.pid]),
            "twemproxy": (self.twem_port, [self.twem.pid] + [p.pid for _, p in self.plain]),
        }

    def stop(self):
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        # The supervisor's shards are its children's children: stop any left over.
        for pid in self.shard_pids:
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass
        self.tmp.cleanup()


def bench(port, pids, pipeline, requests, tests, clients=50, random=True, own=()):
    """{test: (rps, p50 ms, p99 ms, cpu us/request, cpu us/request of `own` alone)}"""
    before = cpu_ticks(pids)
    own_before = cpu_ticks(own)
    keys = ["-r", "1000000"] if random else []
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-c", str(clients), *keys, "-d", "16",
         "-n", str(requests), "-P", str(pipeline), "--csv", "-t", tests],
        capture_output=True, text=True, check=True).stdout
    per = 1e6 / CLK_TCK / requests / len(tests.split(","))
    cpu = (cpu_ticks(pids) - before) * per
    own_cpu = (cpu_ticks(own) - own_before) * per
    rows = {}
    for row in csv.DictReader(io.StringIO(out)):
        rows[row["test"].split(" ")[0]] = (float(row["rps"]), float(row["p50_latency_ms"]),
                                           float(row["p99_latency_ms"]), cpu, own_cpu)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=200000)
    p.add_argument("--pipeline-requests", type=int, default=1000000)
    # Half the cores: the shards and redis-benchmark run on the same machine.
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    p.add_argument("--no-build", action="store_true")
    args = p.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "tessera"], cwd=ROOT, check=True,
                       env={**os.environ, "CARGO_TARGET_DIR": TARGET})
    s = Setup(args.threads)
    results = {}
    try:
        targets = s.targets()
        for rnd in range(args.rounds):
            names = list(targets) if rnd % 2 == 0 else list(reversed(targets))
            for pipeline in (1, 16):
                n = args.requests if pipeline == 1 else args.pipeline_requests
                for name in names:
                    print(f"round {rnd + 1}/{args.rounds}: {name} -P {pipeline}", file=sys.stderr)
                    port, pids = targets[name]
                    own = [s.proxy.pid] if name == "proxy" else []
                    for test, fig in bench(port, pids, pipeline, n, "set,get", own=own).items():
                        results.setdefault((name, pipeline, test), []).append(fig)
        # 1000 connections against 50, through the proxy and (for what redis-benchmark itself
        # loses with 1000 connections) to redis-server directly.
        # The CPU per request of the proxy alone (of redis-server) tells what the server loses
        # apart from the load generator, which runs on the same cores.
        conns = {}
        for name in ("proxy", "redis"):
            port, pids = targets[name]
            own = [s.proxy.pid] if name == "proxy" else pids
            for clients in (50, 1000):
                figs = [bench(port, pids, 1, args.requests, "get", clients, own=own)["GET"]
                        for _ in range(args.rounds)]
                conns[(name, clients)] = (statistics.median(f[0] for f in figs),
                                          statistics.median(f[4] for f in figs))
        # Connections the benchmark's proxy holds to each shard (the supervised proxy has its
        # own, so the shards' connected_clients would count both).
        out = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True,
                             text=True).stdout
        backend = {shard: 0 for shard in s.shards}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) < 5 or f"pid={s.proxy.pid}," not in line:
                continue
            peer = parts[3].rsplit(":", 1)[-1]
            if peer.isdigit() and int(peer) in backend:
                backend[int(peer)] += 1
        # Added latency: one connection, -P 1, one key (no -r: "key:000000000000"), through
        # the proxy and directly to the shard serving it.
        owner = next(p for p in s.shards
                     if not cli(p, "GET", "key:000000000000").startswith("MOVED"))
        lat = {}
        for name, port in (("proxy", s.proxy_port), ("shard", owner)):
            figs = [bench(port, [], 1, 20000, "get", 1, random=False)["GET"]
                    for _ in range(args.rounds)]
            lat[name] = statistics.median(f[1] for f in figs) * 1000
    finally:
        s.stop()

    def med(name, pipeline, test, i):
        return statistics.median(f[i] for f in results[(name, pipeline, test)])

    print()
    print(f"redis-benchmark -t set,get -c 50 -r 1000000 -d 16, median of {args.rounds} "
          f"interleaved rounds; proxy: {args.threads} threads, 3 shards")
    print("cpu: CPU (user+system) per request in microseconds of the proxy and its shards "
          "(of the proxy alone), of redis-server, of nutcracker and its shards")
    header = (f"{'test':<5} {'P':>3} {'proxy ops/s':>12} {'redis ops/s':>12} {'twem ops/s':>11} "
              f"{'vs redis':>8} {'vs twem':>8} {'proxy p50':>9} {'redis p50':>9} "
              f"{'twem p50':>8} {'proxy cpu':>12} {'redis cpu':>9} {'twem cpu':>8}")
    print(header)
    print("-" * len(header))
    for pipeline in (1, 16):
        for test in ("SET", "GET"):
            f = {n: [med(n, pipeline, test, i) for i in range(5)]
                 for n in ("proxy", "redis", "twemproxy")}
            proxy_cpu = f"{f['proxy'][3]:.2f} ({f['proxy'][4]:.2f})"
            print(f"{test:<5} {pipeline:>3} {f['proxy'][0]:>12,.0f} {f['redis'][0]:>12,.0f} "
                  f"{f['twemproxy'][0]:>11,.0f} {f['proxy'][0] / f['redis'][0]:>8.2f} "
                  f"{f['proxy'][0] / f['twemproxy'][0]:>8.2f} {f['proxy'][1]:>9.3f} "
                  f"{f['redis'][1]:>9.3f} {f['twemproxy'][1]:>8.3f} {proxy_cpu:>12} "
                  f"{f['redis'][3]:>9.2f} {f['twemproxy'][3]:>8.2f}")
    print()
    for name in ("proxy", "redis"):
        (c50, cpu50), (c1000, cpu1000) = conns[(name, 50)], conns[(name, 1000)]
        print(f"GET to {name}, -P 1: 50 connections {c50:,.0f} ops/s, 1000 connections "
              f"{c1000:,.0f} ops/s, ratio {c1000 / c50:.2f}; {name}'s own CPU per request "
              f"{cpu50:.2f} us and {cpu1000:.2f} us, ratio {cpu50 / cpu1000:.2f}")
    print(f"connections from the proxy to each shard ({args.threads} threads): "
          + ", ".join(f"{port}: {n}" for port, n in backend.items()))
    print(f"GET p50 with one connection, -P 1: proxy {lat['proxy']:.0f} us, shard directly "
          f"{lat['shard']:.0f} us, added {lat['proxy'] - lat['shard']:.0f} us")


if __name__ == "__main__":
    main()
