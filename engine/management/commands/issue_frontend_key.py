"""Give the chat frontend a key for the embedded engine, once, kept in a private file."""

import os

from django.conf import settings
from django.core.management.base import BaseCommand

from engine.models import ApiKey, Project


class Command(BaseCommand):
    help = "Create the engine key the chat frontend uses, unless one is configured or exists."

    def handle(self, *args: object, **options: object) -> None:
        if settings.ASSISTANTS_KEY:
            return
        path = settings.ASSISTANTS_KEY_FILE
        if (
            path.exists()
            and ApiKey.objects.filter(
                key_hash=ApiKey.hash(path.read_text().strip()), revoked_at__isnull=True
            ).exists()
        ):
            return
        # A project of the chat's own: no script's key reads its people's threads.
        _, plaintext = ApiKey.issue(Project.chat(), "Chat frontend")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(plaintext + "\n")
        self.stdout.write(f"Created the chat frontend's engine key in {path}.")
