#!/usr/bin/env python3
"""Control plane figures, one run on this machine (the issue 6 targets).

1. Watch latency: a long-poll (GET /v1/config?after=EPOCH) waits on each follower; the leader
   commits a change; the latency is the time from the leader's answer to the watcher's return
   (negative values count as 0: the follower can apply before the leader's answer arrives).
2. Leader failover: SIGKILL of the leader, then the time until another member reports itself
   leader (polling every 10 ms); the killed member is restarted, catches up, and a second
   later the next round begins.

Three `tessera control` members on loopback, as `tessera up` will run them.
usage: bench/control.py [--writes 200] [--failovers 10] [--no-build]
It prints figures; it is not a test and never fails on a figure.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/tessera/target"))
TOKEN = "bench"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, method, path, body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Authorization": f"Bearer {TOKEN}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


class Member:
    def __init__(self, ident, base, join=None):
        self.id, self.port, self.dir = ident, free_port(), os.path.join(base, f"m{ident}")
        self.args = ["--join", f"127.0.0.1:{join}"] if join else []
        self.proc = None
        self.start()

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        log = open(os.path.join(self.dir, "control.log"), "ab")
        self.proc = subprocess.Popen(
            [os.path.join(TARGET, "release", "tessera"), "control", "--id", str(self.id),
             "--dir", self.dir, "--listen", f"127.0.0.1:{self.port}", "--token", TOKEN]
            + self.args, stdout=subprocess.DEVNULL, stderr=log)
        self.wait(lambda: self.status() is not None)

    def status(self):
        try:
            return call(self.port, "GET", "/v1/status", timeout=1)
        except Exception:
            return None

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait()

    @staticmethod
    def wait(cond, timeout=30):
        end = time.time() + timeout
        while not cond():
            if time.time() > end:
                raise RuntimeError("timed out")
            time.sleep(0.01)


def leader(members):
    for i, m in enumerate(members):
        if m.proc:
            s = m.status()
            if s and s["state"] == "leader":
                return i
    return None


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--writes", type=int, default=200)
    p.add_argument("--failovers", type=int, default=10)
    p.add_argument("--no-build", action="store_true")
    args = p.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "tessera"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as base:
        first = Member(1, base)
        call(first.port, "POST", "/v1/cluster/init", {"name": "bench"})
        members = [first, Member(2, base, first.port), Member(3, base, first.port)]
        Member.wait(lambda: all(len((m.status() or {}).get("voters", [])) == 3 for m in members))
        try:
            call(first.port, "POST", "/v1/databases",
                 {"name": "bench", "shards": 1, "replication": False, "persistence": "none",
                  "memory": 0})
            lat = []
            for i in range(args.writes):
                l = leader(members)
                epoch = members[l].status()["epoch"]
                seen = {}

                def watch(m):
                    call(m.port, "GET", f"/v1/config?after={epoch}&wait_ms=10000")
                    seen[m.id] = time.perf_counter()

                ts = [threading.Thread(target=watch, args=(m,))
                      for j, m in enumerate(members) if j != l]
                for t in ts:
                    t.start()
                time.sleep(0.005)
                call(members[l].port, "PATCH", "/v1/databases/bench", {"memory": (i + 1) << 20})
                answered = time.perf_counter()
                for t in ts:
                    t.join()
                lat += [max(0.0, s - answered) * 1000 for s in seen.values()]
            print(f"watch latency over {len(lat)} follower watches: p50 {pct(lat, 50):.2f} ms, "
                  f"p99 {pct(lat, 99):.2f} ms, max {max(lat):.2f} ms (target <= 50 ms)")
            times = []
            for _ in range(args.failovers):
                l = leader(members)
                t0 = time.perf_counter()
                members[l].kill()
                while leader(members) is None:
                    time.sleep(0.01)
                times.append((time.perf_counter() - t0) * 1000)
                members[l].start()
                # The restarted member catches up before the next kill.
                Member.wait(lambda: len({(m.status() or {}).get("last_applied")
                                         for m in members}) == 1)
                time.sleep(1)
            print(f"leader failover over {len(times)} SIGKILLs: median "
                  f"{statistics.median(times):.0f} ms, max {max(times):.0f} ms (target <= 2000 ms)")
        finally:
            for m in members:
                m.stop()


if __name__ == "__main__":
    main()
