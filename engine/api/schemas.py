"""Request bodies of the Assistants API, validated with the spec's limits."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_INSTRUCTIONS = 256_000
# A message's text, as OpenAI capped it.
MAX_CONTENT = 256_000
MAX_TOOLS = 128
MAX_METADATA_PAIRS = 16


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def check_metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > MAX_METADATA_PAIRS:
        raise ValueError(f"metadata can have at most {MAX_METADATA_PAIRS} pairs.")
    for key, item in value.items():
        if len(key) > 64:
            raise ValueError("metadata keys can be at most 64 characters long.")
        if len(item) > 512:
            raise ValueError("metadata values can be at most 512 characters long.")
    return value


Metadata = Annotated[dict[str, str] | None, Field(default=None)]


class FunctionDefinition(Body):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(Body):
    type: Literal["function"]
    function: FunctionDefinition


class RankingOptions(Body):
    ranker: Literal["auto", "default_2024_08_21"] = "auto"
    score_threshold: float = Field(0.0, ge=0, le=1)


class FileSearchSettings(Body):
    max_num_results: int | None = Field(None, ge=1, le=50)
    ranking_options: RankingOptions | None = None


class FileSearchTool(Body):
    type: Literal["file_search"]
    file_search: FileSearchSettings | None = None


class CodeInterpreterTool(Body):
    type: Literal["code_interpreter"]


Tool = Annotated[FunctionTool | FileSearchTool | CodeInterpreterTool, Field(discriminator="type")]


def check_tools(tools: list[Any] | None) -> list[Any] | None:
    if tools is None:
        return None
    if len(tools) > MAX_TOOLS:
        raise ValueError(f"an assistant or run can have at most {MAX_TOOLS} tools.")
    names = [tool.function.name for tool in tools if isinstance(tool, FunctionTool)]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"function names must be unique; repeated: {', '.join(duplicates)}.")
    return tools


class StaticChunking(Body):
    max_chunk_size_tokens: int = Field(800, ge=100, le=4096)
    chunk_overlap_tokens: int = Field(400, ge=0)


class ChunkingStrategy(Body):
    type: Literal["auto", "static"]
    static: StaticChunking | None = None

    @field_validator("static")
    @classmethod
    def overlap_fits(cls, value: StaticChunking | None) -> StaticChunking | None:
        if value and value.chunk_overlap_tokens > value.max_chunk_size_tokens // 2:
            raise ValueError("chunk_overlap_tokens must not exceed half of max_chunk_size_tokens.")
        return value


class NewVectorStore(Body):
    file_ids: list[str] = Field(default_factory=list, max_length=10_000)
    chunking_strategy: ChunkingStrategy | None = None
    metadata: Metadata

    _metadata = field_validator("metadata")(check_metadata)


class FileSearchResources(Body):
    vector_store_ids: list[str] | None = Field(None, max_length=1)
    vector_stores: list[NewVectorStore] | None = Field(None, max_length=1)


class CodeInterpreterResources(Body):
    file_ids: list[str] = Field(default_factory=list, max_length=20)


class ToolResources(Body):
    code_interpreter: CodeInterpreterResources | None = None
    file_search: FileSearchResources | None = None


class JsonSchemaFormat(Body):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormatText(Body):
    type: Literal["text"]


class ResponseFormatJsonObject(Body):
    type: Literal["json_object"]


class ResponseFormatJsonSchema(Body):
    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


ResponseFormat = (
    Literal["auto"]
    | Annotated[
        ResponseFormatText | ResponseFormatJsonObject | ResponseFormatJsonSchema,
        Field(discriminator="type"),
    ]
)


class AssistantFields(Body):
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=512)
    instructions: str | None = Field(None, max_length=MAX_INSTRUCTIONS)
    tools: list[Tool] | None = None
    tool_resources: ToolResources | None = None
    metadata: Metadata
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    response_format: ResponseFormat | None = None
    reasoning_effort: Literal["low", "medium", "high"] | None = None

    _metadata = field_validator("metadata")(check_metadata)
    _tools = field_validator("tools")(check_tools)


class CreateAssistant(AssistantFields):
    model: str = Field(min_length=1, max_length=256)


class ModifyAssistant(AssistantFields):
    model: str | None = Field(None, min_length=1, max_length=256)


class TextPart(Body):
    type: Literal["text"]
    text: str = Field(max_length=MAX_CONTENT)


class ImageFileRef(Body):
    file_id: str
    detail: Literal["auto", "low", "high"] = "auto"


class ImageFilePart(Body):
    type: Literal["image_file"]
    image_file: ImageFileRef


class ImageUrlRef(Body):
    url: str = Field(pattern=r"^https?://\S+$", max_length=2048)
    detail: Literal["auto", "low", "high"] = "auto"


class ImageUrlPart(Body):
    type: Literal["image_url"]
    image_url: ImageUrlRef


ContentPart = Annotated[TextPart | ImageFilePart | ImageUrlPart, Field(discriminator="type")]


class AttachmentTool(Body):
    type: Literal["code_interpreter", "file_search"]


class Attachment(Body):
    file_id: str
    tools: list[AttachmentTool] = Field(default_factory=list)


class CreateMessage(Body):
    role: Literal["user", "assistant"]
    content: Annotated[str, Field(max_length=MAX_CONTENT)] | list[ContentPart]
    attachments: list[Attachment] | None = None
    metadata: Metadata

    _metadata = field_validator("metadata")(check_metadata)

    @field_validator("content")
    @classmethod
    def not_empty(cls, value: str | list[Any]) -> str | list[Any]:
        if isinstance(value, list) and not value:
            raise ValueError("content must not be empty.")
        return value


class ModifyMessage(Body):
    metadata: Metadata

    _metadata = field_validator("metadata")(check_metadata)


class CreateThread(Body):
    messages: list[CreateMessage] | None = None
    tool_resources: ToolResources | None = None
    metadata: Metadata

    _metadata = field_validator("metadata")(check_metadata)


class ModifyThread(Body):
    tool_resources: ToolResources | None = None
    metadata: Metadata

    _metadata = field_validator("metadata")(check_metadata)


class TruncationStrategy(Body):
    type: Literal["auto", "last_messages"]
    last_messages: int | None = Field(None, ge=1)


class NamedFunction(Body):
    name: str


class FunctionChoice(Body):
    type: Literal["function"]
    function: NamedFunction


class HostedToolChoice(Body):
    type: Literal["file_search", "code_interpreter"]


ToolChoice = (
    Literal["none", "auto", "required"]
    | Annotated[FunctionChoice | HostedToolChoice, Field(discriminator="type")]
)


class RunFields(Body):
    assistant_id: str
    model: str | None = Field(None, min_length=1, max_length=256)
    instructions: str | None = Field(None, max_length=MAX_INSTRUCTIONS)
    tools: list[Tool] | None = None
    metadata: Metadata
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stream: bool | None = None
    max_prompt_tokens: int | None = Field(None, ge=256)
    max_completion_tokens: int | None = Field(None, ge=16)
    truncation_strategy: TruncationStrategy | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None
    reasoning_effort: Literal["low", "medium", "high"] | None = None

    _metadata = field_validator("metadata")(check_metadata)
    _tools = field_validator("tools")(check_tools)


class CreateRun(RunFields):
    additional_instructions: str | None = Field(None, max_length=MAX_INSTRUCTIONS)
    additional_messages: list[CreateMessage] | None = None


class CreateThreadAndRun(RunFields):
    thread: CreateThread | None = None
    tool_resources: ToolResources | None = None


class ModifyRun(Body):
    metadata: Metadata

    _metadata = field_validator("metadata")(check_metadata)


class ToolOutput(Body):
    tool_call_id: str
    output: str = ""


class SubmitToolOutputs(Body):
    tool_outputs: list[ToolOutput] = Field(min_length=1)
    stream: bool | None = None


def dump(model: BaseModel | None) -> Any:
    """A validated sub-object as plain JSON data, without the fields the caller left out."""
    if model is None:
        return None
    return model.model_dump(mode="json", exclude_none=True, by_alias=True)


# --- Files and vector stores ----------------------------------------------------------------------

MAX_ATTRIBUTE_PAIRS = 16

AttributeValue = str | bool | int | float


def check_attributes(value: dict[str, AttributeValue] | None) -> dict[str, AttributeValue] | None:
    if value is None:
        return None
    if len(value) > MAX_ATTRIBUTE_PAIRS:
        raise ValueError(f"attributes can have at most {MAX_ATTRIBUTE_PAIRS} pairs.")
    for key, item in value.items():
        if len(key) > 64:
            raise ValueError("attribute keys can be at most 64 characters long.")
        if isinstance(item, str) and len(item) > 512:
            raise ValueError("attribute string values can be at most 512 characters long.")
    return value


class ExpiresAfter(Body):
    anchor: Literal["last_active_at"]
    days: int = Field(ge=1, le=365)


class CreateVectorStore(Body):
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=512)
    file_ids: list[str] = Field(default_factory=list, max_length=500)
    chunking_strategy: ChunkingStrategy | None = None
    expires_after: ExpiresAfter | None = None
    metadata: Metadata

    _metadata = field_validator("metadata")(check_metadata)


class ModifyVectorStore(Body):
    name: str | None = Field(None, max_length=256)
    expires_after: ExpiresAfter | None = None
    metadata: Metadata

    _metadata = field_validator("metadata")(check_metadata)


class CreateVectorStoreFile(Body):
    file_id: str
    chunking_strategy: ChunkingStrategy | None = None
    attributes: dict[str, AttributeValue] | None = None

    _attributes = field_validator("attributes")(check_attributes)


class UpdateVectorStoreFile(Body):
    attributes: dict[str, AttributeValue] | None

    _attributes = field_validator("attributes")(check_attributes)


class CreateFileBatch(Body):
    """Either `file_ids` sharing one strategy and attributes, or `files` each with their own."""

    file_ids: list[str] | None = Field(None, min_length=1, max_length=2000)
    files: list[CreateVectorStoreFile] | None = Field(None, min_length=1, max_length=2000)
    chunking_strategy: ChunkingStrategy | None = None
    attributes: dict[str, AttributeValue] | None = None

    _attributes = field_validator("attributes")(check_attributes)

    def entries(self) -> list[CreateVectorStoreFile]:
        """One entry per file; the caller checks that exactly one of the two lists was given."""
        if self.files is not None:
            return self.files
        return [
            CreateVectorStoreFile(
                file_id=file_id,
                chunking_strategy=self.chunking_strategy,
                attributes=self.attributes,
            )
            for file_id in self.file_ids or []
        ]


class ComparisonFilter(Body):
    type: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"]
    key: str
    value: AttributeValue | list[str | int | float]


class CompoundFilter(Body):
    type: Literal["and", "or"]
    filters: list[Filter] = Field(min_length=1)


Filter = Annotated[ComparisonFilter | CompoundFilter, Field(discriminator="type")]
CompoundFilter.model_rebuild()


class SearchRankingOptions(Body):
    ranker: Literal["none", "auto", "default-2024-11-15"] = "auto"
    score_threshold: float = Field(0.0, ge=0, le=1)


class SearchVectorStore(Body):
    query: str | list[str]
    rewrite_query: bool = False
    max_num_results: int = Field(10, ge=1, le=50)
    filters: Filter | None = None
    ranking_options: SearchRankingOptions | None = None

    @field_validator("query")
    @classmethod
    def not_empty(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("query must not be an empty list.")
        return value

    def queries(self) -> list[str]:
        return [self.query] if isinstance(self.query, str) else self.query
