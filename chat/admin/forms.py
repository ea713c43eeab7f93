"""The admin's assistant form: every field the Assistants API holds, checked before it is sent."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, cast

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from chat import assistants_api as api
from chat import uploads
from chat.admin import assistant_sync
from chat.models import AssistantProfile

FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# Ids go into the API's URL paths: nothing there but what ids are made of.
ASSISTANT_ID = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
ASSISTANT_ID_HELP = (
    "Leave it empty to create a new assistant on the Assistants API. To take over one that "
    "is there already, give its id (like asst_abc123): it must exist, and it then gets the "
    "settings above, its knowledge files show below, and its function tools stay as they are "
    "unless you define some. To copy one as it is instead, use “Import from API” in the list. "
    "It cannot be changed later."
)
METADATA_PAIRS = 16
FUNCTIONS_HELP = (
    'A JSON list of functions: [{"name": "get_weather", "description": "…", '
    '"parameters": {"type": "object", "properties": {…}}}]. '
    "Parameters must be a valid JSON Schema. Empty: no functions. A function defined here that "
    "no registry entry runs is answered by the user in the chat."
)


class SuggestingInput(forms.TextInput):
    """A text box with suggestions (a <datalist>); any other value stays possible."""

    def __init__(self, suggestions: list[str]) -> None:
        super().__init__()
        self.suggestions = suggestions

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> SafeString:
        attrs = {**(attrs or {}), "list": f"{name}-suggestions"}
        box = super().render(name, value, attrs, renderer)
        options = format_html_join("", '<option value="{}">', ((s,) for s in self.suggestions))
        return format_html('{}<datalist id="{}-suggestions">{}</datalist>', box, name, options)


class CountedTextarea(forms.Textarea):
    """A textarea that shows how many characters it holds of its limit (static/chat/admin.js)."""

    def __init__(self, limit: int) -> None:
        super().__init__(attrs={"rows": 12, "data-limit": str(limit), "class": "vLargeTextField"})
        self.limit = limit

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> SafeString:
        box = super().render(name, value, attrs, renderer)
        count = len(value or "")
        return format_html(
            '{}<p class="help char-count" data-count-for="{}" aria-live="polite">'
            "{} / {} characters</p>",
            box,
            name,
            f"{count:,}",
            f"{self.limit:,}",
        )


class JSONText(forms.CharField):
    """JSON typed by hand: shown indented, parsed on submit, a syntax error at the field."""

    widget = forms.Textarea(attrs={"rows": 8, "class": "vLargeTextField", "spellcheck": "false"})

    def prepare_value(self, value: Any) -> str:
        if not value or isinstance(value, str):
            return value or ""  # none, [] and {} all show as an empty box
        return json.dumps(value, indent=2, ensure_ascii=False)

    def to_python(self, value: Any) -> Any:
        text = (super().to_python(value) or "").strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError as error:
            raise forms.ValidationError(f"This is not valid JSON: {error}.") from None

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return self.to_python(data) != initial
        except forms.ValidationError:
            return True


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": uploads.ACCEPT}))
        super().__init__(**kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[UploadedFile]:
        files = data if isinstance(data, list | tuple) else [data]
        return [super(MultipleFileField, self).clean(f, initial) for f in files if f]


def check_functions(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise forms.ValidationError("Function definitions must be a JSON list of objects.")
    errors: list[str] = []
    seen: set[str] = set()
    functions = []
    for index, item in enumerate(value, start=1):
        where = f"Function {index}"
        if not isinstance(item, dict):
            errors.append(f"{where} is not an object.")
            continue
        unknown = set(item) - {"name", "description", "parameters", "strict"}
        if unknown:
            errors.append(f"{where} has unknown keys: {', '.join(sorted(unknown))}.")
        name = item.get("name")
        if not isinstance(name, str) or not FUNCTION_NAME.match(name):
            errors.append(
                f"{where} needs a name of letters, digits, _ or - (at most 64 characters)."
            )
        else:
            where = f"Function {name!r}"
            if name in seen:
                errors.append(f"Function name {name!r} is used twice; names must be unique.")
            seen.add(name)
        if not isinstance(item.get("description", ""), str):
            errors.append(f"{where}: the description must be text.")
        parameters = item.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            errors.append(f"{where}: parameters must be a JSON Schema object.")
        else:
            try:
                Draft202012Validator.check_schema(parameters)
            except SchemaError as error:
                path = "/".join(str(p) for p in error.absolute_path) or "(top)"
                errors.append(
                    f"{where}: parameters are not a valid JSON Schema at {path}: {error.message}."
                )
        functions.append(item)
    if errors:
        raise forms.ValidationError(errors)
    return functions


def check_metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise forms.ValidationError('Metadata must be a JSON object, like {"team": "legal"}.')
    errors = []
    if len(value) > METADATA_PAIRS:
        errors.append(f"Metadata holds at most {METADATA_PAIRS} pairs; this has {len(value)}.")
    for key, item in value.items():
        if len(key) > 64:
            errors.append(f"Metadata key {key[:20]!r}… is longer than 64 characters.")
        if not isinstance(item, str) or len(item) > 512:
            errors.append(f"Metadata value of {key!r} must be text of at most 512 characters.")
    if errors:
        raise forms.ValidationError(errors)
    return value


@dataclass(frozen=True)
class LookedUp:
    """A remote assistant looked up by id ahead of time: found, or the API's error."""

    assistant_id: str
    found: assistant_sync.Remote | None
    error: api.AssistantsError | None


class AssistantProfileForm(forms.ModelForm):
    too_large: list[str] = []  # set per request by the admin: files skipped as too large
    # Set per request by the admin: the remote assistant named, asked before its transaction.
    looked_up: LookedUp | None = None
    functions = JSONText(required=False, label="Function definitions", help_text=FUNCTIONS_HELP)
    metadata = JSONText(
        required=False,
        help_text=f'A JSON object of up to {METADATA_PAIRS} text pairs, like {{"team": "legal"}}.',
    )
    knowledge_files = MultipleFileField(
        required=False,
        label="Add knowledge files",
        help_text=f"{uploads.TYPES_TEXT}; several at once. Each is checked by its content.",
    )

    class Meta:
        model = AssistantProfile
        fields = [
            "name",
            "description",
            "published",
            "groups",
            "model",
            "instructions",
            "temperature",
            "top_p",
            "response_format",
            "file_search",
            "code_interpreter",
            "registry_functions",
            "functions",
            "metadata",
            "assistant_id",
        ]
        widgets = {
            "instructions": CountedTextarea(AssistantProfile.INSTRUCTIONS_LIMIT),
            "description": forms.Textarea(attrs={"rows": 2, "class": "vLargeTextField"}),
            # Check boxes, not the admin's two-list filter: its script labels an icon in a way
            # screen readers are not allowed to read (axe-core: aria-prohibited-attr).
            "groups": forms.CheckboxSelectMultiple,
            "registry_functions": forms.CheckboxSelectMultiple,
        }
        help_texts = {
            "assistant_id": ASSISTANT_ID_HELP,
            "registry_functions": (
                "Functions from the registry (Chat → Functions) this assistant may call; the "
                "chat runs them, or asks the user. A definition below with the same name gives "
                "way to the registry's."
            ),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Strictly: a bad count here is also caught by the model's validator.
        cast(
            forms.CharField, self.fields["instructions"]
        ).max_length = AssistantProfile.INSTRUCTIONS_LIMIT
        self.checked_files: list[uploads.CheckedFile] = []
        # The remote assistant a new profile takes over, if its id was given (clean_assistant_id).
        self.mirrored: assistant_sync.Remote | None = None
        limit = settings.KNOWLEDGE_MAX_UPLOAD_BYTES
        # The page refuses an over-limit file before sending it (static/chat/admin.js).
        self.fields["knowledge_files"].widget.attrs.update(
            {"data-max-bytes": str(limit), "data-max-text": uploads.human_size(limit)}
        )

    def clean_assistant_id(self) -> str:
        """Only on a new profile (read-only after): empty, or an assistant the API has."""
        value = (self.cleaned_data.get("assistant_id") or "").strip()
        if not value:
            return ""
        if not ASSISTANT_ID.match(value):
            raise forms.ValidationError(
                "An assistant id is made of letters, digits, _ and - (like asst_abc123)."
            )
        taken = AssistantProfile.objects.filter(assistant_id=value).first()
        if taken is not None:
            raise forms.ValidationError(f"“{taken}” already mirrors {value}; edit that one.")
        try:
            self.mirrored = self.remote(value)
        except api.NotFound:
            raise forms.ValidationError(
                f"The Assistants API has no assistant {value}. Check the id, or leave it "
                "empty to create a new assistant."
            ) from None
        except api.AssistantsError as error:
            raise forms.ValidationError(
                f"The id cannot be checked now: {error} Try again, or leave it empty to "
                "create a new assistant."
            ) from None
        return value

    def remote(self, assistant_id: str) -> assistant_sync.Remote:
        looked_up = self.looked_up
        if looked_up is None or looked_up.assistant_id != assistant_id:
            return assistant_sync.remote(assistant_id)  # a form used on its own
        if looked_up.error is not None:
            raise looked_up.error
        assert looked_up.found is not None, "found or not, the API answered"
        return looked_up.found

    def clean_functions(self) -> list[dict[str, Any]] | None:
        value = self.cleaned_data.get("functions")
        if value is None:
            return None  # an empty box: see clean(), which knows about the remote id
        return check_functions(value)

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if "functions" in cleaned and cleaned["functions"] is None:
            # An empty box: no functions; but a mirrored profile that never managed its
            # functions leaves the remote assistant's alone (see AssistantProfile.functions),
            # and so does a new one taking over a remote assistant.
            unmanaged = self.instance.pk is not None and self.instance.functions is None
            cleaned["functions"] = None if unmanaged or self.mirrored is not None else []
        return cleaned

    def clean_metadata(self) -> dict[str, str]:
        return check_metadata(self.cleaned_data.get("metadata"))

    def clean_knowledge_files(self) -> list[UploadedFile]:
        files = self.cleaned_data.get("knowledge_files") or []
        if len(files) > settings.KNOWLEDGE_MAX_FILES:
            raise forms.ValidationError(
                f"Add at most {settings.KNOWLEDGE_MAX_FILES} knowledge files at once "
                f"({len(files)} were chosen); save, then add the rest."
            )
        limit = settings.KNOWLEDGE_MAX_UPLOAD_BYTES
        # Skipped while they arrived (chat.middleware): too large to keep at all.
        errors = [uploads.too_large_message(name, limit) for name in self.too_large]
        checked = []
        for uploaded in files:
            try:
                checked.append(uploads.check(uploaded, limit))
            except uploads.Refused as refused:
                errors.append(str(refused))
        if errors:
            raise forms.ValidationError(errors)
        self.checked_files = checked
        return files
