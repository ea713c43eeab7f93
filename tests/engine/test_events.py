"""The fan-out of a run's events from the worker's thread to the responses on the server's loop."""

from __future__ import annotations

import asyncio
import threading

from engine.runs import events


async def follow(subscription: events.Subscription) -> list[tuple[str, object]]:
    seen = []
    async for batch in subscription.batches():
        seen.extend(batch)
    return seen


def test_every_reader_gets_every_event_in_order_from_another_thread():
    runs = [f"run_{n}" for n in range(50)]

    async def main() -> list[list[tuple[str, object]]]:
        subscriptions = [events.subscribe(run) for run in runs]
        readers = [asyncio.create_task(follow(s)) for s in subscriptions]
        await asyncio.sleep(0)  # every reader is asleep now

        def produce() -> None:
            for n in range(200):
                for run in runs:
                    events.publish(run, "tick", n)
            for run in runs:
                events.publish(run, events.DONE, "[DONE]")

        await asyncio.to_thread(produce)
        return await asyncio.gather(*readers)

    for seen in asyncio.run(main()):
        assert seen == [("tick", n) for n in range(200)] + [(events.DONE, "[DONE]")]


def test_wakes_for_one_loop_are_gathered():
    """Pushes to many sleeping readers before their loop runs cost one wake of that loop."""
    runs = [f"gathered_{n}" for n in range(20)]

    async def main() -> tuple[int, list[list[tuple[str, object]]]]:
        loop = asyncio.get_running_loop()
        calls = 0
        original = loop.call_soon_threadsafe

        def counting(*args, **kwargs):
            nonlocal calls
            calls += 1
            return original(*args, **kwargs)

        loop.call_soon_threadsafe = counting
        subscriptions = [events.subscribe(run) for run in runs]
        readers = [asyncio.create_task(follow(s)) for s in subscriptions]
        await asyncio.sleep(0)

        def produce() -> None:
            for run in runs:
                events.publish(run, "tick", 1)
                events.publish(run, events.DONE, "[DONE]")

        # Run on a thread while this loop is blocked, as a busy server loop would be.
        producer = threading.Thread(target=produce)
        producer.start()
        producer.join()
        return calls, await asyncio.gather(*readers)

    calls, seen = asyncio.run(main())
    assert calls == 1
    assert all(s == [("tick", 1), (events.DONE, "[DONE]")] for s in seen)


def test_a_push_for_a_closed_loop_is_dropped():
    subscription = events.subscribe("closed_loop")
    loop = asyncio.new_event_loop()
    # A reader asleep on a loop that has since closed (its server is shutting down).
    subscription._loop, subscription._waiter, subscription._sleeping = loop, asyncio.Event(), True
    loop.close()
    events.publish("closed_loop", "tick", 1)  # the run that pushes goes on
    assert loop not in events._to_wake
    subscription.close()
