"""What people type and attach, checked before anything reaches the Assistants API."""

from __future__ import annotations

from dataclasses import dataclass, field

from django import forms
from django.conf import settings
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User
from django.http import HttpRequest

from chat import uploads
from chat.access import assistant_for
from chat.models import AssistantProfile

EMPTY = "Write a message first."


class MessageForm(forms.Form):
    text = forms.CharField(strip=True, error_messages={"required": EMPTY})

    def clean_text(self) -> str:
        text: str = self.cleaned_data["text"]
        limit = settings.CHAT_MAX_MESSAGE_CHARS
        if len(text) > limit:
            raise forms.ValidationError(
                f"Your message is {len(text):,} characters long; the limit is {limit:,}. "
                "Shorten it, or put the text in a file and attach that."
            )
        return text


class EditForm(MessageForm):
    """A message of the person's, changed: which one, and its new text."""

    message = forms.CharField(max_length=200)


class RenameForm(forms.Form):
    title = forms.CharField(max_length=200, strip=True)


class SignupForm(UserCreationForm):
    pass


@dataclass
class Submission:
    """A message as sent from the composer, with everything wrong with it."""

    text: str
    profile: AssistantProfile | None = None
    files: list[uploads.CheckedFile] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def read_submission(request: HttpRequest, user: User, new: bool) -> Submission:
    """Parse and check the composer's POST (blocking work: call it from a thread)."""
    raw_text = request.POST.get("text", "")
    form = MessageForm(request.POST)
    submission = Submission(text=raw_text)
    if form.is_valid():
        submission.text = form.cleaned_data["text"]
    else:
        submission.errors.extend(str(error) for error in form.errors["text"])
    if new:
        submission.profile = assistant_for(user, request.POST.get("assistant"))
        if submission.profile is None:
            submission.errors.append("Choose an assistant.")
    for handler in request.upload_handlers:
        if isinstance(handler, uploads.LimitedUploadHandler):
            submission.errors.extend(uploads.too_large_message(n) for n, _ in handler.too_large)
    files = request.FILES.getlist("files")
    if len(files) > settings.CHAT_MAX_FILES:
        submission.errors.append(f"Attach at most {settings.CHAT_MAX_FILES} files at once.")
        return submission
    for uploaded in files:
        try:
            submission.files.append(uploads.check(uploaded, data=True))
        except uploads.Refused as refused:
            submission.errors.append(str(refused))
    return submission
