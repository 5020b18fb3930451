"""The cluster's parts on a real Valkey, in one process: limits that behave as one node's do, events that cross
in order, and a silent node's calls taken once by one survivor.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from calls.hub import Hub
from calls.limits import Throttle
from cluster.bus import EventBus
from cluster.nodes import ClusterNode
from cluster.throttle import RedisThrottle


@pytest.fixture
async def redis(valkey: str):
    r = Redis.from_url(valkey)
    yield r
    await r.aclose()


@pytest.fixture(params=["node", "cluster"])
def throttle(request, redis):
    """The same limit, held by one node or by the cluster: the behaviour below must not tell them apart."""
    if request.param == "node":
        return Throttle(5, 60.0, lockout=2.0)
    return RedisThrottle(redis, "test", 5, 60.0, lockout=2.0)


async def test_a_limit_locks_after_its_attempts_and_backs_off(throttle):
    assert [await throttle.take("k") for _ in range(5)] == [True] * 5  # the fifth fills the window and locks
    assert not await throttle.take("k")
    assert 1.5 < await throttle.retry_after("k") <= 2.0
    assert await throttle.retry_after("other") == 0 and await throttle.take("other")
    await throttle.forgive("k")
    assert await throttle.retry_after("k") == 0 and await throttle.take("k")


async def test_a_refund_gives_an_attempt_back(throttle):
    for _ in range(4):
        await throttle.take("k")
        await throttle.refund("k")  # a right password does not count
    assert [await throttle.take("k") for _ in range(4)] == [True] * 4
    assert await throttle.retry_after("k") == 0


async def test_a_burst_across_nodes_is_held_to_the_limit(redis, valkey):
    """Two nodes' limiters on one Redis, 40 attempts at once: 5 pass, as on one node."""
    other = Redis.from_url(valkey)
    try:
        nodes = [RedisThrottle(r, "burst", 5, 60.0, lockout=60.0) for r in (redis, other)]
        taken = await asyncio.gather(*(nodes[i % 2].take("address:1") for i in range(40)))
        assert sum(taken) == 5
    finally:
        await other.aclose()


async def test_events_cross_to_the_other_node_in_order(redis, valkey):
    hubs = [Hub(), Hub()]
    connections = [redis, Redis.from_url(valkey)]
    buses = [EventBus(r, f"n{i}", hub.deliver) for i, (r, hub) in enumerate(zip(connections, hubs, strict=True))]
    for hub, bus in zip(hubs, buses, strict=True):
        hub.relay = bus.relay
        await bus.start()
    try:
        here, there = hubs[0].subscribe(7), hubs[1].subscribe(7)
        customer = hubs[1].subscribe(("customer", "abc"))
        for i in range(500):
            hubs[0].publish(7, {"type": "n", "i": i})
        hubs[0].publish(("customer", "abc"), None)  # a customer topic's end crosses too
        got = [(await asyncio.wait_for(there.get(), 5))["i"] for _ in range(500)]
        assert got == list(range(500))
        assert [here.get_nowait()["i"] for _ in range(500)] == list(range(500))  # its own, once each
        assert here.empty() and await asyncio.wait_for(customer.get(), 5) is None
    finally:
        for bus in buses:
            await bus.close()
        await connections[1].aclose()


async def test_a_silent_nodes_calls_are_taken_once_by_one_survivor(valkey):
    lost: list[tuple[str, list[str], str]] = []
    nodes: list[ClusterNode] = []
    for name in ("a", "b", "c"):
        r = Redis.from_url(valkey)
        node = ClusterNode(r, name, lambda name=name: f"http://{name}", EventBus(r, name, lambda k, e: None))
        node.beat, node.ttl = 0.2, 0.8

        async def on_lost(calls: list[str], why: str, name: str = name) -> None:
            lost.append((name, calls, why))

        await node.start(on_lost)
        nodes.append(node)
    a, b, c = nodes
    await a.claim("call1")
    await a.claim("call2")
    assert await b.locate("call1") == "http://a" and await a.locate("call1") is None
    await a.release("call2")
    await b.redis.flushall()  # Redis restarted, empty: within a beat, a says its calls again
    await asyncio.sleep(0.5)
    assert await b.locate("call1") == "http://a" and await b.locate("call2") is None

    a._task.cancel()  # node a stops answering, without a word: as kill -9 leaves it
    silent = time.monotonic()
    while not lost and time.monotonic() - silent < 5:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # the other survivor's watch has run again meanwhile
    assert [(calls, why) for _, calls, why in lost] == [(["call1"], "node a stopped answering during the call")]
    assert time.monotonic() - silent < 0.8 + 0.2 + 0.5
    assert await b.locate("call1") is None and set(await b.nodes()) == {"b", "c"}
    for node in (b, c):
        await node.close()
    await a.bus.close()
    await a.redis.aclose()
