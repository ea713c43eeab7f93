"""What a server process checks once, before it serves: the outside services its settings name."""

from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def require_redis() -> None:
    """With REDIS_URL set, Redis holds the sessions and carries the live answers: without it,
    signing in fails with a server error. Refuse to start instead, naming the setting."""
    if not settings.REDIS_URL:
        return
    try:
        with redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=5, socket_timeout=5
        ) as client:
            client.ping()
    except redis.RedisError as error:
        raise ImproperlyConfigured(
            f"REDIS_URL is set, but Redis at {without_password(settings.REDIS_URL)} does not "
            f"answer ({str(error).rstrip('.')}). Start Redis or correct REDIS_URL; unset it "
            "to serve from a single process without Redis."
        ) from None


def without_password(url: str) -> str:
    password = urlsplit(url).password
    return url if password is None else url.replace(f":{password}@", ":***@", 1)
