#!/usr/bin/env python3
"""Fetch Redis's own command metadata (COMMAND and COMMAND DOCS) from a running redis-server
and save it as JSON. The JSON is committed; tools/gen_command_table.py turns it into the
protocol crate's static command table, so the table follows Redis's metadata exactly.

usage: tools/fetch_redis_commands.py [port] > crates/protocol/data/redis-7.0-commands.json
"""
import json
import socket
import sys


class Resp3:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def send(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self.read()

    def line(self):
        while b"\r\n" not in self.buf:
            self.buf += self.sock.recv(1 << 20)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n + 2:
            self.buf += self.sock.recv(1 << 20)
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read(self):
        line = self.line()
        t, rest = chr(line[0]), line[1:].decode()
        if t in "+":
            return rest
        if t == "-":
            raise RuntimeError(rest)
        if t == ":":
            return int(rest)
        if t in "$=":
            return self.exact(int(rest)).decode()
        if t == "_":
            return None
        if t == "#":
            return rest == "t"
        if t == ",":
            return float(rest)
        if t in "*~>":
            items = [self.read() for _ in range(int(rest))]
            return {"set": items} if t == "~" else items
        if t == "%":
            n = int(rest)
            pairs = [(self.read(), self.read()) for _ in range(n)]
            return {"map": pairs}
        raise RuntimeError("unexpected type " + t)


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 6379
    r = Resp3(port)
    r.send("HELLO", "3")
    info = r.send("COMMAND")
    docs = r.send("COMMAND", "DOCS")
    version = dict(r.send("HELLO", "3")["map"])["version"]
    json.dump({"redis_version": version, "info": info, "docs": docs}, sys.stdout, indent=None)


if __name__ == "__main__":
    main()
