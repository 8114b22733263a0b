#!/usr/bin/env python3
"""Persistence figures, Tessera vs redis-server 7.0, one run on this machine.

1. Restart time: N keys with 16-byte values (DEBUG POPULATE), saved (SAVE), the server
   restarted; the time from the process start until a command no longer gets -LOADING.
   Redis loads its dump.rdb; Tessera its checkpoint image. For N in --keys (default 1M, 10M).
2. Checkpoint cost: 1M keys loaded, then redis-benchmark SET (-P 1 and -P 16, -r 1M over the
   loaded keys) with and without checkpoints running back to back the whole time (BGSAVE
   again as soon as one ends), in interleaved rounds: the median throughput ratio, and the
   peak RSS during checkpoints against the RSS after the same load without them (sampled
   every 20 ms). Redis is measured the same way for context
   (its fork copies pages on write).

usage: bench/persistence.py [--keys 1000000,10000000] [--requests 1000000] [--rounds 3]
                            [--no-build] [--skip-restart] [--skip-checkpoint]
It prints figures; it is not a test and never fails on a figure.
"""
import argparse
import statistics
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/tessera/target"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, kind, data_dir, extra=()):
        self.kind, self.dir, self.extra = kind, data_dir, list(extra)
        self.port = free_port()
        self.start()

    def start(self):
        if self.kind == "tessera":
            cmd = [os.path.join(TARGET, "release", "tessera"), "server", "--port", str(self.port),
                   "--dir", self.dir, "--save", "", "--loglevel", "warning",
                   "--enable-debug-command", "yes"]
        else:
            cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                   self.dir, "--save", "", "--appendonly", "no", "--loglevel", "warning",
                   "--enable-debug-command", "yes"]
        cmd += self.extra
        self.started = time.time()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                              text=True).stdout.strip()

    def wait_ready(self):
        """Seconds from the process start until PING answers PONG (not -LOADING)."""
        while self.cli("PING") != "PONG":
            time.sleep(0.005)
        return time.time() - self.started

    def info(self, section, field):
        for line in self.cli("INFO", section).splitlines():
            if line.startswith(field + ":"):
                return line.split(":", 1)[1]
        return None

    def rss(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self, save=False):
        self.cli("SHUTDOWN", "SAVE" if save else "NOSAVE")
        try:
            self.proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def restart_time(kind, n):
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", ROOT)) as d:
        s = Server(kind, d)
        s.wait_ready()
        s.cli("DEBUG", "POPULATE", str(n), "key", "16")
        t0 = time.time()
        s.cli("SAVE")
        save_secs = time.time() - t0
        s.stop()
        s.start()
        secs = s.wait_ready()
        keys = int(s.cli("DBSIZE"))
        s.stop()
        return secs, save_secs, keys


def bench_set(port, pipeline, requests):
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-c", "50", "-r", "1000000", "-d", "16", "-t", "set",
         "-n", str(requests), "-P", str(pipeline), "--csv"],
        capture_output=True, text=True, check=True).stdout
    return float(out.splitlines()[1].split(",")[1].strip('"'))


def checkpoint_cost(kind, requests, rounds):
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", ROOT)) as d:
        s = Server(kind, d)
        s.wait_ready()
        s.cli("DEBUG", "POPULATE", "1000000", "key:", "16")
        # redis-benchmark -r writes key:__rand_int__ (zero-padded): fill those keys once.
        bench_set(s.port, 16, 2000000)
        base_rss = 0
        figures = {}
        for pipeline in (1, 16):
            n = requests if pipeline == 16 else requests // 5
            quiet, busy, peaks, saves = [], [], [], 0
            # Interleaved rounds (this machine's figures wander between runs): the same load
            # without checkpoints, then with checkpoints back to back.
            for r in range(rounds):
                quiet.append(bench_set(s.port, pipeline, n))
                if pipeline == 1 and r == 0:
                    # The dataset's RSS under this load, without checkpoints.
                    time.sleep(1)
                    base_rss = s.rss()
                stop = threading.Event()
                peak = [base_rss]
                count = [0]

                def saver():
                    # One connection, no process per poll: on two cores, spawning redis-cli
                    # every few milliseconds would cost the servers more than checkpoints do.
                    conn = socket.create_connection(("127.0.0.1", s.port))
                    f = conn.makefile("rb")

                    def command(*args):
                        conn.sendall(b"".join([b"*%d\r\n" % len(args)] + [
                            b"$%d\r\n%s\r\n" % (len(a), a) for a in args]))
                        line = f.readline()
                        if line.startswith(b"$"):
                            return f.read(int(line[1:]) + 2)[:-2].decode()
                        return line.decode().strip()

                    while not stop.is_set():
                        command(b"BGSAVE")
                        count[0] += 1
                        while not stop.is_set():
                            peak[0] = max(peak[0], s.rss())
                            if "rdb_bgsave_in_progress:1" not in command(b"INFO", b"persistence"):
                                break
                            time.sleep(0.02)
                    conn.close()

                t = threading.Thread(target=saver)
                t.start()
                time.sleep(0.05)
                busy.append(bench_set(s.port, pipeline, n))
                stop.set()
                t.join()
                while s.info("persistence", "rdb_bgsave_in_progress") == "1":
                    time.sleep(0.01)
                peaks.append(peak[0])
                saves += count[0]
            figures[pipeline] = (statistics.median(quiet), statistics.median(busy), saves,
                                 max(peaks))
        s.stop()
        return base_rss, figures


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--keys", default="1000000,10000000")
    p.add_argument("--requests", type=int, default=1000000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--skip-restart", action="store_true")
    p.add_argument("--skip-checkpoint", action="store_true")
    args = p.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "tessera"], cwd=ROOT, check=True)
    if not args.skip_restart:
        print("restart time (process start to first non-LOADING reply), 16-byte values")
        print(f"{'keys':>10} {'tessera s':>10} {'redis s':>8} {'ratio':>6} {'t save s':>9} {'r save s':>9}")
        for n in (int(k) for k in args.keys.split(",")):
            print(f"measuring {n} keys", file=sys.stderr)
            t, tsave, tk = restart_time("tessera", n)
            r, rsave, rk = restart_time("redis", n)
            assert tk == n and rk == n, (tk, rk)
            print(f"{n:>10} {t:>10.2f} {r:>8.2f} {t / r:>6.2f} {tsave:>9.2f} {rsave:>9.2f}")
    if not args.skip_checkpoint:
        print()
        print("SET throughput while checkpoints run back to back (1M keys, -c 50 -r 1000000 -d 16),"
              f" medians of {args.rounds} interleaved rounds")
        print(f"{'server':<8} {'P':>3} {'quiet ops/s':>12} {'during ops/s':>13} {'ratio':>6} "
              f"{'saves':>6} {'RSS MB':>7} {'peak MB':>8} {'peak/RSS':>9}")
        for kind in ("tessera", "redis"):
            base, figs = checkpoint_cost(kind, args.requests, args.rounds)
            for pipeline, (quiet, busy, saves, peak) in figs.items():
                print(f"{kind:<8} {pipeline:>3} {quiet:>12,.0f} {busy:>13,.0f} {busy / quiet:>6.2f} "
                      f"{saves:>6} {base / 2**20:>7.0f} {peak / 2**20:>8.0f} {peak / base:>9.2f}")


if __name__ == "__main__":
    main()
