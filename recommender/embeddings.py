"""The shop's product-text embedding cache, shared by every worker through artifact storage.

Embedding a catalogue with the sentence model takes minutes on a small CPU, so vectors are kept
in one ``EmbeddingCache`` file per text model (``<ARTIFACT_PREFIX>/embeddings/<model>.npz``)
keyed by a hash of each product's text: ``embed_products()`` (every few minutes from Celery
beat) embeds only products whose text is new or changed, and trainings of strategies with an
``embedding_cache`` parameter (``content``) start from the same file.

Two writers at once lose nothing that matters: the last upload wins, and a vector missing from
it is embedded again on the next run.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import tempfile
from pathlib import Path

import pandas as pd
from django.core.files import File

from . import artifacts
from .catalog import get_adapter
from .conf import settings
from .strategies.text import DEFAULT_TEXT_MODEL, EmbeddingCache, SentenceEncoder, items_text


def shared_cache_name(model: str) -> str:
    """Storage name of the embedding cache of ``model``."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(model).name or model).strip("-") or "model"
    return f"{settings.ARTIFACT_PREFIX.strip('/')}/embeddings/{slug}.npz"


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@contextlib.contextmanager
def shared_embedding_cache(model: str | None = None):
    """Yield a local path holding the shared cache of ``model``; upload it back if it changed."""
    name = shared_cache_name(model or settings.TEXT_MODEL or DEFAULT_TEXT_MODEL)
    storage = artifacts.get_storage()
    with tempfile.TemporaryDirectory(prefix="recommender-embeddings-") as local_dir:
        local = Path(local_dir) / "embeddings.npz"
        if storage.exists(name):
            with storage.open(name, "rb") as source:
                local.write_bytes(source.read())
        before = _digest(local)
        yield local
        if _digest(local) not in (None, before):
            with local.open("rb") as handle:
                artifacts.replace_file(storage, name, File(handle))


def embed_products() -> dict:
    """Embed the products whose text is new or changed; return counts.

    Returns ``{"products": n, "embedded": m, "model": name}``; ``embedded`` is 0 when nothing
    changed. Raises ``TextModelUnavailable`` (with what to install) without the text model.
    """
    model = settings.TEXT_MODEL or DEFAULT_TEXT_MODEL
    rows = list(get_adapter().iter_rows())
    if not rows:
        return {"products": 0, "embedded": 0, "model": model}
    items = pd.DataFrame.from_records(rows)
    items.index = pd.Index(items.pop("pk").map(str), name="item_id")
    texts = items_text(items)
    with shared_embedding_cache(model) as path:
        encoder = SentenceEncoder(model=model, cache=EmbeddingCache.load(path, model),
                                  device=settings.TEXT_MODEL_DEVICE, threads=settings.TEXT_MODEL_THREADS)
        encoder.encode(texts)
        if encoder.embedded_count:
            encoder.cache.save(path)
    return {"products": len(texts), "embedded": encoder.embedded_count, "model": model}
