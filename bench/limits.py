"""Limits benchmark: what checking a person's limits adds to pressing Send, side by side on one
live server (chat and engine in one daphne process, SQLite, the scripted model).

Two people send in turn, each message in a new chat, each answer read to its end before the
next send: "free" has no limits; "limited" has every limit set (never reached) and a day of
history (`--history` answers in the last 24 hours, with tokens and files), so every check
reads real rows. Both pay for the locked transaction and the row every send writes; the
difference is the checks. Timed: the send POST, what a browser waits for before the answer
starts. Then a burst: `--burst` sends at once by a third person whose limit is half of them:
how many went through (must be exactly half) and how long the burst took.

Caveats: a 2-core shared machine; compare the ratio column, not absolute numbers across runs.

    .venv/bin/python bench/limits.py [--sends 40] [--history 500] [--burst 20]
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402

from bench.report import percentile, table  # noqa: E402
from tests.fake_model import FakeModelServer  # noqa: E402
from tests.servers import model_env, shell, start_chat_server  # noqa: E402

PASSWORD = "a-long-bench-password-42"  # noqa: S105 (a throwaway server)
SETUP = """
import json
from datetime import timedelta
from django.contrib.auth.models import User
from django.utils import timezone
from chat.models import AnswerUsage, AssistantProfile, UsageLimits
free = User.objects.create_user("free", password={password!r})
limited = User.objects.create_user("limited", password={password!r})
burst = User.objects.create_user("burst", password={password!r})
UsageLimits.objects.create(
    user=limited, messages_per_hour=10**6, messages_per_day=10**6, answers_at_once=100,
    tokens_per_day=10**12, tokens_per_month=10**12, upload_mb_per_day=10**6, stored_mb=10**6,
)
UsageLimits.objects.create(user=burst, messages_per_hour={half})
now = timezone.now()
AnswerUsage.objects.bulk_create(
    AnswerUsage(
        user=limited, run_id=f"run_old_{{i}}", thread_id="thread_old", upload_bytes=1000 * (i % 3),
        started_at=now - timedelta(seconds=60 + i * 80000 / {history}), ended_at=now,
        prompt_tokens=900, completion_tokens=100, total_tokens=1000,
    )
    for i in range({history})
)
print(json.dumps(AssistantProfile.objects.create(name="Bench", model="bench", published=True).pk))
"""


class Person:
    """A signed-in browser, as far as sending and reading an answer go."""

    def __init__(self, base_url: str, username: str) -> None:
        self.http = httpx2.Client(base_url=base_url, timeout=60)
        self.http.get("/accounts/login/")
        token = self.http.cookies["csrftoken"]
        login = {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token}
        assert self.http.post("/accounts/login/", data=login).status_code == 302

    def send(self, profile: int) -> tuple[float, str | None]:
        """(seconds the POST took, the answer's stream URL or None if refused)."""
        headers = {"X-CSRFToken": self.http.cookies["csrftoken"], "HX-Request": "true"}
        started = time.perf_counter()
        response = self.http.post(
            "/c/new/send", data={"text": "Hello", "assistant": str(profile)}, headers=headers
        )
        took = time.perf_counter() - started
        found = re.search(r'sse-connect="([^"]+)"', response.text)
        return took, found.group(1) if found else None

    def read(self, url: str) -> None:
        with self.http.stream("GET", url, headers={"Accept": "text/event-stream"}) as response:
            for line in response.iter_lines():
                if line == "event: end":
                    return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sends", type=int, default=40, help="sends per person")
    parser.add_argument("--history", type=int, default=500)
    parser.add_argument("--burst", type=int, default=20)
    args = parser.parse_args()

    model = FakeModelServer()
    model.start()
    server = start_chat_server(model_env(model))
    try:
        setup = SETUP.format(password=PASSWORD, history=args.history, half=args.burst // 2)
        profile = shell(server, setup)
        people = {name: Person(server.url, name) for name in ("free", "limited")}
        times: dict[str, list[float]] = {name: [] for name in people}
        for index in range(args.sends + 2):
            # Turn about, who goes first alternating; the first round warms up, untimed.
            order = list(people) if index % 2 == 0 else list(reversed(people))
            for name in order:
                took, url = people[name].send(profile)
                assert url, f"{name}'s send was refused"
                people[name].read(url)
                if index >= 2:
                    times[name].append(took * 1000)

        burst = [Person(server.url, "burst") for _ in range(args.burst)]
        started = time.perf_counter()
        with ThreadPoolExecutor(args.burst) as pool:
            sent = list(pool.map(lambda person: person.send(profile), burst))
        burst_seconds = time.perf_counter() - started
        passed = [(person, url) for person, (_, url) in zip(burst, sent, strict=True) if url]
        for person, url in passed:
            assert url
            person.read(url)

        free, limited = sorted(times["free"]), sorted(times["limited"])
        rows = [
            [
                "send POST (ms)",
                f"p{p}",
                f"{percentile(free, p):.1f}",
                f"{percentile(limited, p):.1f}",
                f"{percentile(limited, p) / percentile(free, p):.2f}",
            ]
            for p in (50, 90, 99)
        ]
        header = ["metric", "", "no limits", f"every limit, {args.history} answers", "ratio"]
        print(table(header, rows))
        print()
        print(
            table(
                ["burst", "sends at once", "limit", "went through", "seconds"],
                [
                    [
                        "one person",
                        str(args.burst),
                        str(args.burst // 2),
                        str(len(passed)),
                        f"{burst_seconds:.2f}",
                    ]
                ],
            )
        )
    finally:
        server.stop()
        model.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
