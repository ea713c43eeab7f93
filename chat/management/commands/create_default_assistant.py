"""Leave one published assistant on a fresh install, so people can chat straight away."""

from django.conf import settings
from django.core.management.base import BaseCommand

from chat.models import AssistantProfile

OFFLINE_MODEL = "threadline-retrieval"
INSTRUCTIONS = (
    "You are a helpful assistant. When documents are attached or in your knowledge, answer "
    "from them and cite them. Say so plainly when they do not cover the question."
)


class Command(BaseCommand):
    help = "Create a published default assistant (with file search) if there is no assistant yet."

    def handle(self, *args: object, **options: object) -> None:
        if AssistantProfile.objects.exists():
            return
        # The remote assistant is created on first use: the API is not served during setup.
        has_model_api = bool(settings.OPENAI_API_KEY or settings.AZURE_OPENAI_ENDPOINT)
        profile = AssistantProfile.objects.create(
            name="Threadline",
            description="A general assistant that can read the documents you attach.",
            model=settings.DEFAULT_MODEL if has_model_api else OFFLINE_MODEL,
            instructions=INSTRUCTIONS,
            file_search=True,
            published=True,
        )
        self.stdout.write(f"Created the default assistant {profile.name!r} ({profile.model}).")
