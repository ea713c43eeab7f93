from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured

from engine.rates import default_rate


class EngineConfig(AppConfig):
    name = "engine"
    verbose_name = "Assistants API engine"

    def ready(self) -> None:
        # A mistyped default must stop the server, not leave every key without a limit.
        try:
            default_rate()
        except ValueError as error:
            raise ImproperlyConfigured(f"THREADLINE_API_RATE_LIMIT: {error}") from None
