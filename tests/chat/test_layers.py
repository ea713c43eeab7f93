"""The single-process channel layer: what Channels' in-memory layer does, without its costs."""

from __future__ import annotations

import asyncio

import pytest
from channels.exceptions import ChannelFull

from chat.live.layers import LocalChannelLayer


def test_group_send_reaches_every_member_once_with_its_own_copy() -> None:
    async def scenario() -> None:
        layer = LocalChannelLayer()
        channels = [await layer.new_channel() for _ in range(3)]
        for channel in channels:
            await layer.group_add("chat.run.r1", channel)
        await layer.group_add("chat.run.other", channels[0])
        message = {"type": "run.event", "seq": 1, "event": "update", "data": "<p>hi</p>"}
        await layer.group_send("chat.run.r1", message)
        received = [await layer.receive(channel) for channel in channels]
        assert received == [message] * 3
        received[0]["seq"] = 99  # a receiver's change stays its own
        assert received[1]["seq"] == 1 and message["seq"] == 1
        await layer.group_discard("chat.run.r1", channels[2])
        await layer.group_send("chat.run.r1", {"type": "run.event", "seq": 2})
        assert (await layer.receive(channels[1]))["seq"] == 2
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(layer.receive(channels[2]), 0.05)

    asyncio.run(scenario())


def test_a_full_receiver_misses_group_messages_but_a_direct_send_says_so() -> None:
    async def scenario() -> None:
        layer = LocalChannelLayer(capacity=2)
        slow, fast = await layer.new_channel(), await layer.new_channel()
        for channel in (slow, fast):
            await layer.group_add("g", channel)
        for seq in range(1, 4):
            await layer.group_send("g", {"type": "run.event", "seq": seq})
            assert (await layer.receive(fast))["seq"] == seq
        assert [(await layer.receive(slow))["seq"] for _ in range(2)] == [1, 2]
        await layer.send(slow, {"type": "x"})
        await layer.send(slow, {"type": "y"})
        with pytest.raises(ChannelFull):
            await layer.send(slow, {"type": "z"})

    asyncio.run(scenario())


def test_messages_expire() -> None:
    async def scenario() -> None:
        layer = LocalChannelLayer(expiry=0)
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "old"})
        layer._swept = 0.0  # the next receive sweeps
        await asyncio.sleep(0.01)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(layer.receive(channel), 0.05)

    asyncio.run(scenario())
