"""Create an engine API key from the command line (admins can also do it in Django admin)."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from engine.models import ApiKey, Project
from engine.rates import parse


class Command(BaseCommand):
    help = "Create an API key for a project and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="What the key is for, e.g. 'reporting script'.")
        parser.add_argument(
            "--project",
            default=Project.DEFAULT_NAME,
            help=(
                f"Project name (default: {Project.DEFAULT_NAME!r}, the scripts' project; "
                f"{Project.CHAT_NAME!r} is the chat frontend's, with its people's threads)."
            ),
        )
        parser.add_argument(
            "--rate-limit",
            default="",
            help='Requests per second, minute or hour ("60/minute"), or "none"; '
            "default: THREADLINE_API_RATE_LIMIT.",
        )

    def handle(self, *args: object, **options: str) -> None:
        try:
            parse(options["rate_limit"] or "none")
        except ValueError as error:
            raise CommandError(str(error)) from None
        project = Project.named(options["project"])
        _, plaintext = ApiKey.issue(project, options["name"], rate_limit=options["rate_limit"])
        self.stdout.write(plaintext)
