"""Embedding models: text to unit vectors for semantic search, chosen by THREADLINE_EMBEDDINGS.

- `local` (the default): WordLlama's "l2_supercat" static token vectors (256 dimensions), whose
  weights ship inside the wordllama wheel, so nothing is downloaded at run time. A text's vector
  is the mean of its tokens' vectors, after "all-but-the-top" post-processing of the vocabulary
  (subtract the mean token vector and the top principal direction, which every token shares and
  which otherwise makes unrelated texts look alike). Thousands of chunks a second on one core.
- `api:<model>`: the configured model API's `/v1/embeddings` (e.g. `api:text-embedding-3-small`,
  or an Ollama embedding model), through `engine.providers.chat_completions`.
- `off`: no vectors; search is full-text only.

Every vector is float32 and unit length (or all zeros for a text with nothing to embed), so a
dot product is the cosine similarity.
"""

from __future__ import annotations

import importlib.util
import threading
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
from django.conf import settings
from safetensors import safe_open
from tokenizers import Tokenizer

from engine.providers import chat_completions

Vectors = npt.NDArray[np.float32]
TokenIds = npt.NDArray[np.uint16]  # the local model's vocabulary has 32,000 tokens

LOCAL_NAME = "local:wordllama-l2-supercat-256-abtt1"
# Texts embedded per step: bounds the gathered token vectors (texts x tokens x 256 floats).
BATCH = 32
# An API embedding request carries at most this many texts, each cut to this many characters.
API_BATCH = 64
API_MAX_CHARS = 24_000


class Embedder(Protocol):
    """An embedding model; `name` identifies its vectors (change it and chunks are re-embedded)."""

    name: str

    def embed(self, texts: list[str]) -> Vectors: ...


class LocalEmbedder:
    name = LOCAL_NAME

    def __init__(self) -> None:
        # Only wordllama's files are used, found without importing it: its own loader looks for
        # the tokenizer online.
        spec = importlib.util.find_spec("wordllama")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("The wordllama package is not installed (pyproject.toml pins it).")
        root = Path(spec.submodule_search_locations[0])
        self.tokenizer = Tokenizer.from_file(
            str(root / "tokenizers" / "l2_supercat_tokenizer_config.json")
        )
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        with safe_open(str(root / "weights" / "l2_supercat_256.safetensors"), "np") as weights:
            table = weights.get_tensor("embedding.weight").astype(np.float32)  # a copy of its own
        self.table = all_but_the_top(table, directions=1)

    def embed(self, texts: list[str]) -> Vectors:
        return self.embed_tokens(self.tokens(texts))

    def tokens(self, texts: list[str]) -> list[TokenIds]:
        ids: list[TokenIds] = []
        for start in range(0, len(texts), BATCH):
            # The fast variant leaves out character offsets, which pooling never reads.
            encodings = self.tokenizer.encode_batch_fast(
                texts[start : start + BATCH], add_special_tokens=False
            )
            ids += [np.asarray(encoding.ids, np.uint16) for encoding in encodings]
        return ids

    def embed_tokens(self, tokens: list[TokenIds]) -> Vectors:
        out = np.zeros((len(tokens), self.table.shape[1]), np.float32)
        for row, ids in enumerate(tokens):
            if len(ids):
                out[row] = self.table[ids].mean(axis=0)
        return normalised(out)


class ApiEmbedder:
    def __init__(self, model: str) -> None:
        self.model = model
        self.name = f"api:{model}"

    def embed(self, texts: list[str]) -> Vectors:
        rows: list[list[float]] = []
        for start in range(0, len(texts), API_BATCH):
            batch = [text[:API_MAX_CHARS] or " " for text in texts[start : start + API_BATCH]]
            rows += chat_completions.embed(batch, self.model)
        return normalised(np.asarray(rows, np.float32).reshape(len(texts), -1))


def all_but_the_top(table: Vectors, directions: int) -> Vectors:
    """Mu & Viswanath's post-processing: remove the common mean and top principal directions.

    In place, a block of rows at a time: the whole table's temporaries would briefly double the
    process's peak memory at load."""
    table -= table.mean(axis=0)
    # The principal directions from the small covariance matrix (dims x dims), not a full SVD.
    _, eigenvectors = np.linalg.eigh(table.T @ table)
    top = eigenvectors[:, -directions:].astype(np.float32)
    for start in range(0, len(table), 4096):
        block = table[start : start + 4096]
        block -= (block @ top) @ top.T
    return table


def normalised(vectors: Vectors) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    result: Vectors = (vectors / norms).astype(np.float32)
    return result


def configured_name() -> str | None:
    """The name of the configured model's vectors, or None when embeddings are off.

    config/settings.py has already refused any value but local, off and api:<model>.
    """
    value = settings.EMBEDDINGS
    if value == "off":
        return None
    if value == "local":
        return LOCAL_NAME
    return "api:" + value.removeprefix("api:").strip()


_lock = threading.Lock()
_loading = False


@cache
def _load(name: str) -> Embedder:
    if name == LOCAL_NAME:
        return LocalEmbedder()
    return ApiEmbedder(name.removeprefix("api:"))


def load_in_background() -> None:
    """Start loading the model on a thread of its own, if it is not loaded: called when files
    arrive for ingestion, so that the load overlaps their extraction."""
    global _loading
    if configured_name() is None or _loading:
        return
    _loading = True  # once per process: a second thread would only wait for the first's load
    threading.Thread(target=configured, name="threadline-embeddings", daemon=True).start()


def configured() -> Embedder | None:
    """The process's embedding model, loaded on first use; None when embeddings are off.

    Not at startup: a process that never ingests or searches knowledge never holds the local
    model (73 MB in bench/knowledge.py); the first search waits for its load (under a second)
    once, and the first ingestion starts it early (`load_in_background`)."""
    name = configured_name()
    if name is None:
        return None
    with _lock:  # two threads asking at once load the weights once
        return _load(name)
