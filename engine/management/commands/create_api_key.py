"""Create an engine API key from the command line (admins can also do it in Django admin)."""

from django.core.management.base import BaseCommand, CommandParser

from engine.models import ApiKey, Project


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

    def handle(self, *args: object, **options: str) -> None:
        project = Project.named(options["project"])
        _, plaintext = ApiKey.issue(project, options["name"])
        self.stdout.write(plaintext)
