#!/usr/bin/env python3
"""Replication figures, Tessera vs redis-server 7.0, one run on this machine.

1. Full sync time: a primary holding N keys (DEBUG POPULATE) and an empty replica; the time
   from REPLICAOF until the replica reports master_link_status:up. Datasets: 1M keys with
   16-byte values, and 1M keys with 1000-byte values (about 1 GB). Both primaries sync
   diskless with no delay (repl-diskless-sync-delay 0); the Redis replica loads diskless too
   (repl-diskless-load swapdb), as Tessera's does.
2. Primary throughput: redis-benchmark SET (-P 1 and -P 16, 50 clients, -r 1M) against a
   primary alone and with one replica attached, in interleaved rounds (medians).
3. Replication lag under that load: a sampler reads the primary's master_repl_offset, then
   the replica's slave_repl_offset until it reaches it; the lag is the time between the two
   (one persistent connection each, sampled every 5 ms). The sampler polls in a tight loop,
   so it runs during a load round of its own, not during the rounds measuring throughput.

usage: bench/replication.py [--rounds 3] [--requests 1000000] [--no-build]
                            [--skip-sync] [--skip-load] [--big-keys 1000000]
It prints figures; it is not a test and never fails on a figure.
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from persistence import ROOT, Server, bench_set

PRIMARY = {"tessera": ["--repl-diskless-sync-delay", "0"],
           "redis": ["--repl-diskless-sync-delay", "0", "--repl-diskless-sync", "yes"]}
REPLICA = {"tessera": [], "redis": ["--repl-diskless-load", "swapdb"]}


class Conn:
    """A persistent RESP connection for polling (no process per poll)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.f = self.sock.makefile("rb")

    def cmd(self, *args):
        out = f"*{len(args)}\r\n"
        for a in args:
            a = str(a)
            out += f"${len(a.encode())}\r\n{a}\r\n"
        self.sock.sendall(out.encode())
        return self.read()

    def read(self):
        line = self.f.readline()
        t, rest = line[:1], line[1:-2]
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2].decode()
        if t == b"-":
            raise RuntimeError(rest.decode())
        return rest.decode()

    def field(self, section, name):
        for line in self.cmd("INFO", section).splitlines():
            if line.startswith(name + ":"):
                return line.split(":", 1)[1]
        return None


def pair(kind, d1, d2):
    p = Server(kind, d1, PRIMARY[kind])
    r = Server(kind, d2, REPLICA[kind])
    p.wait_ready()
    r.wait_ready()
    return p, r


def attach(p, r):
    """REPLICAOF and wait for the link: seconds taken."""
    conn = Conn(r.port)
    t0 = time.time()
    conn.cmd("REPLICAOF", "127.0.0.1", p.port)
    while conn.field("replication", "master_link_status") != "up":
        time.sleep(0.002)
    return time.time() - t0


def full_sync(kind, keys, size):
    base = os.environ.get("BENCH_DIR", ROOT)
    with tempfile.TemporaryDirectory(dir=base) as d1, tempfile.TemporaryDirectory(dir=base) as d2:
        p, r = pair(kind, d1, d2)
        p.cli("DEBUG", "POPULATE", str(keys), "key", str(size))
        secs = attach(p, r)
        n = int(r.cli("DBSIZE"))
        p.stop()
        r.stop()
        return secs, n


def lag_sampler(p, r, stop, lags):
    pc, rc = Conn(p.port), Conn(r.port)
    while not stop.is_set():
        t0 = time.perf_counter()
        target = int(pc.field("replication", "master_repl_offset"))
        while int(rc.field("replication", "slave_repl_offset")) < target:
            if stop.is_set():
                return
        lags.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.005)


def throughput(kind, requests, rounds):
    base = os.environ.get("BENCH_DIR", ROOT)
    with tempfile.TemporaryDirectory(dir=base) as d1, tempfile.TemporaryDirectory(dir=base) as d2:
        p, r = pair(kind, d1, d2)
        # Fill the keys redis-benchmark -r writes once, so every round overwrites.
        bench_set(p.port, 16, 2000000)
        figures = {}
        for pipeline in (1, 16):
            n = requests if pipeline == 16 else requests // 5
            alone, with_replica, lags = [], [], []
            for _ in range(rounds):
                r.cli("REPLICAOF", "NO", "ONE")
                time.sleep(0.5)
                alone.append(bench_set(p.port, pipeline, n))
                attach(p, r)
                time.sleep(0.5)
                # Throughput first, with nothing else running: the lag sampler polls both
                # servers and takes CPU from them, so it runs in a round of its own.
                with_replica.append(bench_set(p.port, pipeline, n))
                stop = threading.Event()
                t = threading.Thread(target=lag_sampler, args=(p, r, stop, lags))
                t.start()
                bench_set(p.port, pipeline, n)
                stop.set()
                t.join()
            lags.sort()
            p99 = lags[int(len(lags) * 0.99) - 1] if lags else float("nan")
            figures[pipeline] = (statistics.median(alone), statistics.median(with_replica),
                                 statistics.median(lags) if lags else float("nan"), p99,
                                 len(lags))
        p.stop()
        r.stop()
        return figures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=1000000)
    ap.add_argument("--big-keys", type=int, default=1000000)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--skip-sync", action="store_true")
    ap.add_argument("--skip-load", action="store_true")
    ap.add_argument("--servers", default="tessera,redis",
                    help="tessera alone for a quick look (redis figures then repeat tessera's)")
    args = ap.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "tessera"], cwd=ROOT, check=True)
    out = sys.stdout
    if not args.skip_sync:
        out.write("full sync (REPLICAOF until master_link_status:up)\n")
        for keys, size, label in ((1000000, 16, "1M keys x 16 B"),
                                  (args.big_keys, 1000, f"{args.big_keys // 1000}k keys x 1000 B")):
            t_secs, t_n = full_sync("tessera", keys, size)
            r_secs, r_n = full_sync("redis", keys, size)
            out.write(f"  {label:22} tessera {t_secs:6.2f} s ({t_n} keys)   redis {r_secs:6.2f} s"
                      f" ({r_n} keys)   tessera/redis time {t_secs / r_secs:.2f}\n")
            out.flush()
    if not args.skip_load:
        out.write("primary SET throughput alone and with one replica (medians), lag under load\n")
        res = {k: throughput(k, args.requests, args.rounds) for k in args.servers.split(",")}
        if "redis" not in res:
            res["redis"] = res["tessera"]
        for pipeline in (1, 16):
            t, r = res["tessera"][pipeline], res["redis"][pipeline]
            out.write(f"  -P {pipeline:2}: tessera alone {t[0]:10.0f} with replica {t[1]:10.0f}"
                      f" ({t[1] / t[0]:.2f}x)   redis alone {r[0]:10.0f} with replica {r[1]:10.0f}"
                      f" ({r[1] / r[0]:.2f}x)   tessera/redis with replica {t[1] / r[1]:.2f}\n")
            out.write(f"         lag ms: tessera median {t[2]:.2f} p99 {t[3]:.2f} ({t[4]} samples)"
                      f"   redis median {r[2]:.2f} p99 {r[3]:.2f} ({r[4]} samples)\n")
            out.flush()


if __name__ == "__main__":
    main()
