"""The OpenAI-compatible embeddings client goes through the LLM layer's error classification and
retries: transient errors are retried, then reported as transient; a bad key is a configuration error."""

from __future__ import annotations

import numpy as np
import pytest
from fakes.llm_servers import FakeOpenAIServer

from convoscope.embedders import EmbeddingEndpointUnavailable, OpenAIEmbeddingEndpoint, make_embedder
from convoscope.errors import ConfigError

FAST = {"retry_initial_s": 0.01, "retry_max_s": 0.02}


def test_vectors_in_order_and_normalised(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeOpenAIServer(embedding_dims=32) as server:
        vectors = make_embedder(f"openai:text-embedding-3-small@{server.url}").encode(["cooking pasta", "tax forms", "cooking pasta"])
    assert vectors.shape == (3, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert np.allclose(vectors[0], vectors[2]) and not np.allclose(vectors[0], vectors[1])
    assert server.requests[0] == {"model": "text-embedding-3-small", "input": ["cooking pasta", "tax forms", "cooking pasta"]}


def test_server_errors_and_dropped_connections_are_retried(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeOpenAIServer(embedding_dims=8) as server:
        server.fail_next(2, status=503)
        server.drop_next(1)
        server.fail_next(1, status=429, retry_after=0)
        vectors = OpenAIEmbeddingEndpoint(f"m@{server.url}", **FAST).encode(["a", "b"])
    assert vectors.shape == (2, 8) and server.request_count == 5


def test_a_5xx_that_persists_is_a_transient_failure_not_a_configuration_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeOpenAIServer() as server:
        server.fail_next(10, status=500)
        with pytest.raises(EmbeddingEndpointUnavailable, match=r"failed transiently \(HTTP 500\) after 3 attempts") as info:
            OpenAIEmbeddingEndpoint(f"m@{server.url}", max_retries=2, **FAST).encode(["a"])
    assert not isinstance(info.value, ConfigError) and server.request_count == 3


def test_a_rejected_key_is_a_configuration_error_at_once(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    with FakeOpenAIServer(api_key="sk-right") as server:
        with pytest.raises(ConfigError, match=r"OPENAI_API_KEY was rejected \(401\)"):
            OpenAIEmbeddingEndpoint(f"m@{server.url}", **FAST).encode(["a"])
    assert server.request_count == 1  # not retried


def test_unreachable_endpoint_is_reported_after_retries(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(EmbeddingEndpointUnavailable, match="cannot connect"):
        OpenAIEmbeddingEndpoint("m@http://127.0.0.1:9", max_retries=1, **FAST).encode(["a"])
