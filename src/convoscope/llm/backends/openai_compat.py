"""OpenAI Chat Completions over HTTP (aiohttp), for OpenAI itself and any compatible server
(vLLM, Ollama, llama.cpp server, LM Studio, ...).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import aiohttp
import orjson

from convoscope.errors import ConfigError
from convoscope.llm.backends import Completion, TransientError
from convoscope.llm.backends.http import json_of, jsonl_lines, post_json, send
from convoscope.llm.base import LLMRequest, Usage
from convoscope.llm.batch import BatchStatus, ItemResult
from convoscope.llm.settings import BackendSpec

if TYPE_CHECKING:
    from convoscope.llm.client import HttpPool

DEFAULT_URL = "https://api.openai.com/v1"



def answer_of(data: dict[str, Any]) -> Completion:
    """A Chat Completions response (live, or one batch output line's body) as a Completion. OpenAI caches
    prompt prefixes of 1024 tokens and more by itself; `prompt_tokens` includes the cached part."""
    try:
        text = data["choices"][0]["message"]["content"] or ""
        usage_data = data.get("usage") or {}
        cached = int((usage_data.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        usage = Usage(int(usage_data.get("prompt_tokens", 0)), int(usage_data.get("completion_tokens", 0)), cache_read_tokens=cached)
    except (KeyError, IndexError, TypeError, ValueError):
        raise TransientError("the server sent an unexpected response shape") from None
    return Completion(text, usage)


class OpenAICompatBackend:
    local = False

    def __init__(self, spec: BackendSpec, http: HttpPool):
        self.spec = spec
        self._http = http
        base = spec.base_url or DEFAULT_URL
        if urlparse(base).path in ("", "/"):
            base = base.rstrip("/") + "/v1"  # "http://localhost:8000" means the usual /v1 root
        self.url = base.rstrip("/") + "/chat/completions"
        self.official = spec.base_url is None
        key = os.environ.get("OPENAI_API_KEY")
        if not key and self.official:
            raise ConfigError(f"OPENAI_API_KEY is not set (needed by '{spec}')")
        self._headers = {"authorization": f"Bearer {key}"} if key else {}
        self.batches = OpenAIBatches(self)

    def request_body(self, request: LLMRequest) -> dict[str, Any]:
        messages: list[dict[str, str]] = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": m.role, "content": m.content} for m in request.messages]
        body: dict[str, Any] = {"model": self.spec.model, "messages": messages, "temperature": request.temperature}
        # OpenAI's newer models accept only max_completion_tokens; compatible servers know max_tokens.
        body["max_completion_tokens" if self.official else "max_tokens"] = request.max_tokens
        if request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": re.sub(r"[^A-Za-z0-9_-]", "_", request.task)[:64] or "answer", "schema": request.json_schema, "strict": True},
            }
        return body

    async def complete(self, request: LLMRequest) -> Completion:
        key_env = "OPENAI_API_KEY" if self._headers else None
        data = await post_json(self._http.client(), self.url, self._headers, self.request_body(request), key_env=key_env, model=self.spec.model)
        return answer_of(data)

    async def aclose(self) -> None:
        return None


class OpenAIBatches:
    """The OpenAI Batch API: the requests as a JSONL file (POST /v1/files, purpose=batch; one
    {custom_id, method, url, body} a line), POST /v1/batches for /v1/chat/completions within 24h, GET
    /v1/batches/{id} until it is completed, expired, cancelled or failed, then the output and error
    files (GET /v1/files/{id}/content). Compatible servers without it answer 404: a clear error."""

    max_items = 50_000
    max_bytes = 200 * 1024 * 1024
    ENDPOINT = "/v1/chat/completions"

    def __init__(self, backend: OpenAICompatBackend):
        self._backend = backend
        self.root = backend.url.removesuffix("/chat/completions")
        self._files: dict[str, tuple[str | None, str | None]] = {}  # batch id -> (output file, error file)

    def entry(self, custom_id: str, request: LLMRequest) -> dict[str, Any]:
        return {"custom_id": custom_id, "method": "POST", "url": self.ENDPOINT, "body": self._backend.request_body(request)}

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        backend = self._backend
        return await send(backend._http.client(), method, self.root + path, backend._headers, key_env="OPENAI_API_KEY" if backend._headers else None,
                          model=backend.spec.model, not_found="no OpenAI Batch API here (run without --batch), or an unknown batch or file", **kwargs)

    async def create(self, entries: list[dict[str, Any]]) -> str:
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", b"".join(orjson.dumps(e) + b"\n" for e in entries), filename="convoscope-batch.jsonl", content_type="application/jsonl")
        uploaded = json_of(await self._call("POST", "/files", form=form))
        batch = json_of(await self._call("POST", "/batches", body={"input_file_id": _field(uploaded, "id"), "endpoint": self.ENDPOINT, "completion_window": "24h"}))
        return _field(batch, "id")

    async def status(self, batch_id: str) -> BatchStatus:
        data = json_of(await self._call("GET", f"/batches/{batch_id}"))
        counts = data.get("request_counts") or {}
        finished = int(counts.get("completed") or 0) + int(counts.get("failed") or 0)
        status = _field(data, "status")
        if status == "failed":  # the input file failed validation: nothing ran
            errors = (data.get("errors") or {}).get("data") or [{}]
            first = errors[0]
            # the code and line number only: a validation message may quote the line, which holds a prompt
            where = f" at line {first['line']} of the uploaded file" if isinstance(first.get("line"), int) else ""
            return BatchStatus(ended=True, finished=finished, failure=f"{first.get('code', 'failed')}{where} ({len(errors)} error(s))")
        ended = status in ("completed", "expired", "cancelled")
        if ended:
            self._files[batch_id] = (data.get("output_file_id"), data.get("error_file_id"))
        return BatchStatus(ended=ended, finished=finished)

    async def results(self, batch_id: str) -> dict[str, ItemResult]:
        output_file, error_file = self._files.get(batch_id, (None, None))
        out: dict[str, ItemResult] = {}
        for file_id in (output_file, error_file):
            if not file_id:
                continue
            for line in jsonl_lines(await self._call("GET", f"/files/{file_id}/content")):
                out[_field(line, "custom_id")] = self._item(line)
        return out  # items in neither file (a cancelled batch) are resubmitted by the caller

    @staticmethod
    def _item(line: dict[str, Any]) -> ItemResult:
        response = line.get("response") or {}
        status = int(response.get("status_code") or 0)
        if status == 200 and not line.get("error"):
            try:
                return ItemResult(answer_of(response["body"]))
            except (KeyError, TransientError) as exc:
                return ItemResult(retry=True, error=f"unreadable batch answer ({exc})")
        code = str((line.get("error") or {}).get("code") or (f"HTTP {status}" if status else "error"))
        # a 4xx other than 408/409/429 would be refused again; expiry and server errors may pass next time
        permanent = 400 <= status < 500 and status not in (408, 409, 429)
        return ItemResult(retry=not permanent, error=f"batch item failed: {code}")


def _field(data: Any, name: str) -> str:
    try:
        return str(data[name])
    except (KeyError, TypeError):
        raise TransientError(f"the server sent an unexpected batch response (no {name})") from None
