"""redis-py's cluster client (Debian's python3-redis) against a Tessera database, run by
tests/it/cluster_shared.rs: `redis_py_cluster.py <port> <nodes it should find>`.

Exits non-zero on the first thing that is not as a Redis Cluster gives it.
"""
import sys
import time

from redis.cluster import RedisCluster

port, expected_nodes = int(sys.argv[1]), int(sys.argv[2])
# redis-py 4 checks INFO's cluster_enabled, then reads CLUSTER SLOTS and COMMAND.
rc = RedisCluster(host="127.0.0.1", port=port, decode_responses=True)
nodes = rc.get_nodes()
assert len(nodes) == expected_nodes, [n.name for n in nodes]
assert rc.cluster_info()["cluster_state"] == "ok"
rc.flushall()

# Keys over every slot range, each to its owner.
keys = [f"py:{i}" for i in range(300)]
for i, k in enumerate(keys):
    assert rc.set(k, i)
assert [rc.get(k) for k in keys] == [str(i) for i in range(300)]
assert rc.mset_nonatomic({f"m:{i}": i for i in range(20)})
assert rc.mget_nonatomic([f"m:{i}" for i in range(20)]) == [str(i) for i in range(20)]
# A cluster pipeline: commands grouped by node, replies in order.
p = rc.pipeline()
for i in range(50):
    p.incr(f"c:{i}")
    p.incrby(f"c:{i}", 2)
assert p.execute() == [1, 3] * 50
# Multi-key commands split by slot by the client.
assert rc.exists(*keys[:10]) == 10
assert rc.delete(*keys[:10]) == 10
total = 290 + 20 + 50
assert sum(1 for _ in rc.scan_iter(count=100)) == total
assert rc.dbsize(target_nodes=RedisCluster.PRIMARIES if expected_nodes > 1 else None) == total
# One slot: a hash, a script, a transaction-free pipeline of a tag.
assert rc.hset("{user}:h", mapping={"a": "1", "b": "2"}) == 2
assert rc.hgetall("{user}:h") == {"a": "1", "b": "2"}
assert rc.eval("return redis.call('HGET', KEYS[1], ARGV[1])", 1, "{user}:h", "b") == "2"

# Reads from replicas (READONLY on each replica connection), once they have caught up.
ro = RedisCluster(host="127.0.0.1", port=port, decode_responses=True, read_from_replicas=True)
deadline = time.time() + 10
while [ro.get(k) for k in keys[10:40]] != [str(i) for i in range(10, 40)]:
    assert time.time() < deadline, "replicas did not catch up"
    time.sleep(0.05)

# Pub/sub: the subscriber is on the channel's node, the publisher anywhere.
ps = rc.pubsub()
ps.subscribe("news")
deadline = time.time() + 10
got = None
while got is None:
    assert time.time() < deadline, "no message"
    rc.publish("news", "hello")
    m = ps.get_message(timeout=0.2)
    while m is not None and got is None:
        if m["type"] == "message":
            got = m
        m = ps.get_message(timeout=0.05)
assert got["channel"] == "news" and got["data"] == "hello", got
ps.close()
print("ok")
