"""Stage 5: name the base clusters.

LLM mode follows the paper: the model sees up to 50 random member summaries and up to 50 contrastive
summaries (those nearest the centroid from other clusters) and writes a name of at most ten words and
a two-sentence description. Extractive mode names each cluster by its distinctive terms over a
k-anonymous vocabulary (see keywords.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from convoscope import policy, prompts
from convoscope.components import components_of, embedder_for, fingerprint_parts
from convoscope.context import RunContext
from convoscope.keywords import build_keyword_index, stopwords_for
from convoscope.phrases import name_clusters
from convoscope.taxonomy import fingerprint as taxonomy_fingerprint, labeller_for
from convoscope.llm.base import ChatMessage, LLMRequest
from convoscope.analysis_text import analysis_texts
from convoscope.stages.rows import analysed_rows
from convoscope.stage_runner import Stage, StageOutput, StageRecord, optional_field, run_stage
from convoscope.prompts import NAME_SCHEMA
from convoscope.text import clean_description, clean_name

SAMPLE = 50
FACET_CRITERIA = {
    "request": "The name should say what the users asked the assistant to do, as an imperative sentence.",
    "task": "The name should say what task the assistant performed.",
}


def _name_request(members: list[str], contrast: list[str], facet: str) -> LLMRequest:
    criteria = FACET_CRITERIA.get(facet, f"The name should describe the shared '{facet}' of the conversations.")
    prompt = prompts.user_prompt("name_cluster", members="\n".join(f"- {s}" for s in members),
                                 contrast="\n".join(f"- {s}" for s in contrast) or "(none)")
    return LLMRequest(messages=(ChatMessage("user", prompt),), system=prompts.system_prompt("name_cluster", shared="naming_system", criteria=criteria),
                      temperature=1.0, max_tokens=200, json_schema=NAME_SCHEMA, role="naming", task="name", answer_check=prompts.name_answer_problem)


def llm_cluster_names(ctx: RunContext, labels: np.ndarray, centroids: np.ndarray, vectors: np.ndarray, summaries: list[str],
                      account_index: np.ndarray) -> list[tuple[str, str]]:
    """Names from samples that take at most `max_conversations_per_account` summaries of any one
    account (members and contrast), so no single person can fill the model's view of a cluster."""
    rng = np.random.default_rng(ctx.config.seed)
    cap = ctx.config.privacy.max_conversations_per_account
    requests = []
    for c in range(len(centroids)):
        members = np.flatnonzero(labels == c)
        picked = policy.capped_sample(members, account_index, cap, SAMPLE, rng)
        others = np.flatnonzero(labels != c)
        if len(others):
            sims = vectors[others] @ centroids[c]
            nearest = policy.capped_sample(others[np.argsort(-sims)[:SAMPLE * 4]], account_index, cap, SAMPLE, np.random.default_rng(0))
        else:
            nearest = others
        requests.append(_name_request([summaries[i] for i in sorted(picked)], [summaries[i] for i in nearest], ctx.hierarchy_facet))
    responses = ctx.complete_many(requests, description="Naming clusters")
    names = []
    for c, resp in enumerate(responses):
        if resp.failed or not isinstance(resp.parsed, dict):
            names.append((f"Unnamed cluster {c}", "The naming model failed on this cluster."))
        else:
            names.append((clean_name(resp.parsed["name"]), clean_description(resp.parsed["description"])))
    return names


@dataclass(frozen=True)
class NameRecord(StageRecord):
    mode: str  # "llm", "extractive" or "custom" (an injected namer, convoscope.components)
    # extractive mode: the vocabulary, the terms used by at least min_accounts accounts, person-name terms left out
    vocabulary: int | None = optional_field()
    k_anonymous_vocabulary: int | None = optional_field()
    person_name_terms_excluded: int | None = optional_field()
    boilerplate_phrases: int | None = optional_field()  # phrases left out as common to most clusters
    name_fallbacks: int | None = optional_field()  # names shortened (or "Miscellaneous") to pass the text checks


def custom_cluster_names(ctx: RunContext, namer: Any, labels: np.ndarray, k: int, texts: list[str],
                         account_index: np.ndarray) -> list[tuple[str, str]]:
    """An injected namer's names, from samples capped per account like the LLM's (convoscope.components)."""
    rng = np.random.default_rng(ctx.config.seed)
    cap = ctx.config.privacy.max_conversations_per_account
    samples = [[texts[i] for i in policy.capped_sample(np.flatnonzero(labels == c), account_index, cap, SAMPLE, rng)] for c in range(k)]
    answers = list(namer.name_clusters(samples))
    if len(answers) != k or not all(isinstance(a, (tuple, list)) and len(a) == 2 for a in answers):
        raise TypeError(f"namer {type(namer).__name__}: name_clusters must return one (name, description) pair per sample "
                        f"({k} samples, got {len(answers)} answers)")
    return [(clean_name(str(name)), clean_description(str(description))) for name, description in answers]


def _settings(ctx: RunContext) -> tuple:
    config = ctx.config
    return (*fingerprint_parts(ctx, "namer"), config.llm.spec_for("naming") if config.llm_mode else "none",
            config.privacy.min_accounts, config.privacy.max_conversations_per_account, config.privacy.public_figure_accounts,
            prompts.load("name_cluster").template if config.llm_mode else None, "capped-samples",
            None if config.llm_mode else ("phrases-v3", config.embedding.model, taxonomy_fingerprint(config)))


def _name(ctx: RunContext) -> StageOutput[NameRecord]:
    config = ctx.config
    labels = ctx.store.read_table("base_assignments", columns=["cluster"]).column("cluster").to_numpy().astype(np.int64)
    centroids = ctx.store.read_array("base_centroids", mmap=False)
    rows = analysed_rows(ctx.store)
    k = len(centroids)
    texts = list(analysis_texts(ctx, keep=False))  # the embed stage's read when this process ran it
    _, account_index = np.unique(rows.accounts, return_inverse=True)
    account_index = account_index.reshape(-1)
    extra_artifacts: list[str] = []
    if config.llm_mode:
        vectors = np.asarray(ctx.store.read_array("embeddings", mmap=False))
        names = llm_cluster_names(ctx, labels, centroids, vectors, texts, account_index)
        record = NameRecord(mode="llm")
    else:
        with ctx.console.status("Naming clusters by distinctive phrases"):
            languages = ctx.store.read_table("facets", columns=["language"]).column("language").to_pylist()
            index = build_keyword_index(texts, account_index, config.privacy.min_accounts,  # the same grouping as the hashes
                                        public_figure_accounts=config.privacy.public_figure_accounts,
                                        stop_words=stopwords_for(_run_languages(languages, account_index, config.privacy.min_accounts)),
                                        phrases=True)
            encode = embedder_for(ctx).encode
            named = name_clusters(index, labels, k, account_index, texts, languages, centroids, encode, config.privacy,
                                  labeller=labeller_for(config, encode))
            names = named.names
            # per-cluster counts of phrases k-anonymous in the cluster: the hierarchy names parents from their sums
            coo = named.counts.tocoo()
            extra_artifacts.append(ctx.store.write_table("base_term_counts", pa.table({
                "cluster": pa.array(coo.row, type=pa.int32()), "term": pa.array(index.terms[coo.col].tolist(), type=pa.string()),
                "count": pa.array(coo.data, type=pa.float32())})))
        record = NameRecord(mode="extractive", vocabulary=index.vocabulary_size, k_anonymous_vocabulary=index.allowed_terms,
                            person_name_terms_excluded=index.person_name_terms_excluded, boilerplate_phrases=named.boilerplate,
                            name_fallbacks=named.fallbacks)
    namer = components_of(ctx).namer
    if namer is not None:  # an injected namer replaces the names (parents keep theirs: keywords or the LLM's)
        names = custom_cluster_names(ctx, namer, labels, k, texts, account_index)
        record = dataclasses.replace(record, mode="custom")
    del texts
    sizes = np.bincount(labels, minlength=k)
    accounts = _distinct_accounts(labels, account_index, k)
    table = pa.table({
        "id": [f"b{c}" for c in range(k)],
        "name": [n for n, _ in names],
        "description": [d for _, d in names],
        "size": pa.array(sizes, type=pa.int64()),
        "accounts": pa.array(accounts, type=pa.int64()),
    })
    artifact = ctx.store.write_table("base_clusters", table)
    return StageOutput([artifact, *extra_artifacts], record)


def _distinct_accounts(labels: np.ndarray, account_index: np.ndarray, k: int) -> np.ndarray:
    """`rows.distinct_per_group` from account indices: one sort of integers instead of two of the hashes."""
    width = int(account_index.max(initial=0)) + 1
    return np.bincount(np.unique(labels * width + account_index) // width, minlength=k)


def _run_languages(languages: list[str], account_index: np.ndarray, min_accounts: int) -> list[str]:
    """Languages detected in at least `min_accounts` accounts' conversations: their stopwords are left out."""
    owners: dict[str, set] = {}
    for language, account in zip(languages, account_index.tolist()):
        owners.setdefault(language, set()).add(account)
    return sorted(lang for lang, accounts in owners.items() if len(accounts) >= min_accounts)


NAME = Stage("name", _settings, _name)


def run_naming(ctx: RunContext, upstream: str) -> str:
    return run_stage(NAME, ctx, upstream)
