"""The text each conversation is clustered on (a library module: the embed, naming, hierarchy and
privacy stages all read it).

LLM mode: the hierarchy facet's privacy-preserving summary. Extractive mode: the user's own messages,
identifiers masked and cut to `facets.extractive_max_chars`, re-read from the input whenever needed
and never stored.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from convoscope.scrub import scrub

if TYPE_CHECKING:
    from convoscope.context import RunContext

FAILED_SUMMARY = "No summary: the facet model failed on this conversation."


def extractive_text(user_text: str, max_chars: int, scrub_text: bool) -> str:
    text = " ".join(user_text.split())[:max_chars]
    return scrub(text) if scrub_text else text


def analysis_texts(ctx: "RunContext", *, keep: bool = True) -> Iterator[str]:
    """The text clustered for each row of the facets table, in row order.

    Extractive mode: the texts of the last full read are kept in this process's memory (never on disk) for
    the next read of the same run with the same input, facets rows and settings, which takes them instead of
    reading the input again: the embed stage reads them and the name stage a few minutes later, and the
    re-read (parsing every record) was half the name stage at a million conversations. Only the first full
    read of a run is kept (a later one, e.g. of a resumed run's naming, is not), and `keep=False` keeps none."""
    global _kept
    config = ctx.config
    facets = ctx.store.read_table("facets", columns=["conv_id"] + ([_facet_column(ctx)] if config.llm_mode else []))
    if config.llm_mode:
        for value in facets.column(_facet_column(ctx)).to_pylist():
            yield value if value else FAILED_SUMMARY
        return
    wanted = facets.column("conv_id").to_pylist()
    key = _read_key(ctx, wanted)
    if _kept is not None and _kept[0] == key:
        texts, _kept = _kept[1], None
        _served.add(key)
        yield from texts
        return
    keeping = keep and key not in _served
    read: list[str] = []
    position = 0
    for conv in ctx.iter_input():
        if position < len(wanted) and conv.id == wanted[position]:
            position += 1
            text = extractive_text(conv.user_text(" "), config.facets.extractive_max_chars, config.privacy.scrub_identifiers)
            if keeping:
                read.append(text)
            yield text
    if position != len(wanted):
        from convoscope.errors import InputError

        raise InputError("the input changed while the run was using it; start the run again", path=str(ctx.input_path))
    if keeping:
        _kept = (key, read)


_kept: tuple[tuple, list[str]] | None = None  # (read key, texts) of the last full extractive read, for one more use
_served: set[tuple] = set()  # read keys whose kept texts were used: not kept again


def _read_key(ctx: "RunContext", wanted: list[str]) -> tuple:
    """What the extractive texts depend on: the run, the input (its files' sizes and times, as the ingest
    stage's fingerprint), the rows and the settings."""
    from convoscope.ingest.files import file_stats

    source = ctx.memory.fingerprint if ctx.memory is not None else tuple(file_stats(ctx.input_path))
    settings = (ctx.config.ingest.model_dump_json(), ctx.config.facets.extractive_max_chars, ctx.config.privacy.scrub_identifiers)
    return (str(ctx.store.root.resolve()), source, settings, len(wanted), hash(tuple(wanted)))


def word_check_units(ctx: "RunContext", account_index: np.ndarray) -> np.ndarray:
    """What the word checks of published text count, per row of the facets table: the account index
    given, or, when the facets stage shared calls between conversations, their call bucket. A model may
    copy a detail of one conversation into the answers of the others in its call; every call stays
    within one bucket and all of an account's conversations are in one bucket, so a word found in k
    buckets was written from the conversations of at least k accounts, and a copied word counts once.
    (Size gates keep counting accounts: copying changes no membership.)"""
    import pyarrow as pa

    try:
        column = ctx.store.read_table("facets", columns=["call_bucket"]).column("call_bucket")
    except pa.ArrowInvalid:  # a run from before shared calls: no such column
        return account_index
    if column.null_count == len(column):  # no call was shared
        return account_index
    if column.null_count:
        from convoscope.errors import InputError

        raise InputError(f"the facets table has a call bucket for {len(column) - column.null_count} of {len(column)} conversations "
                         "only (it was not written by one facets stage); run the facets stage again", path=str(ctx.store.root), field="call_bucket")
    buckets = column.to_numpy()
    if len(buckets) != len(account_index):
        raise ValueError(f"{len(buckets)} facet rows for {len(account_index)} accounts")
    return np.unique(buckets, return_inverse=True)[1].reshape(-1)


class SharedCallChecker:
    """`policy.TextChecker` over call buckets (facet calls were shared), plus one rule for every other word.

    TextChecker checks capitalised words and numbers only. A model that copies between the conversations
    of a call can also carry a lowercased name or rare word into several accounts' summaries, where a
    namer picks it up as a frequent word of the cluster. So, when calls were shared, every word of a
    published text that occurs in the summaries must occur in those of at least `min_accounts` buckets
    across the run: a word copied inside one bucket never does, a word genuinely used by that many
    buckets has that many accounts behind it. Words in no summary (the namer's own) are not data.

    Like TextChecker's, the count is kept only for the words checked (a pass intersects each summary's words
    with them, in C), and `prepare` counts the words of many texts in one pass; after `policy.VocabularySupport.FULL_INDEX_AFTER`
    passes for words not prepared, every word of every summary is counted at once."""

    _WORD = re.compile(r"[^\W\d_][\w'-]*")

    def __init__(self, texts: list[str], units: np.ndarray, p: Any) -> None:
        from convoscope import policy

        self.base = policy.TextChecker(texts, units, p)
        self.need = p.min_accounts
        self._texts = texts
        self._units = np.asarray(units)
        self._rare: dict[str, bool] = {}  # word -> in the summaries of at least one and fewer than `need` buckets
        self._everything = False
        self.passes = 0
        self._full_after = policy.VocabularySupport.FULL_INDEX_AFTER

    def prepare(self, texts: list[str]) -> None:
        """Count, in one pass each, every word checking these texts looks up (see TextChecker.prepare)."""
        self.base.prepare(texts)
        self._count({w.lower() for text in texts for w in self._WORD.findall(text)})

    def _count(self, words: set[str]) -> None:
        missing = words - self._rare.keys()
        if not missing or self._everything:
            return
        if self.passes >= self._full_after:
            self._count_everything()
            return
        self.passes += 1
        found: dict[str, set[int]] = {w: set() for w in missing}
        for text, unit in zip(self._texts, self._units.tolist()):
            if text:
                for word in found.keys() & self._WORD.findall(text.lower()):  # in C: no Python step per word of a text
                    found[word].add(unit)
        for word, buckets in found.items():
            self._rare[word] = 0 < len(buckets) < self.need

    def _count_everything(self) -> None:
        seen: dict[str, set[int] | None] = {}  # word -> buckets using it, None once there are enough
        for text, unit in zip(self._texts, self._units.tolist()):
            for word in set(self._WORD.findall((text or "").lower())):
                found = seen.setdefault(word, set())
                if found is not None:
                    found.add(unit)
                    if len(found) >= self.need:
                        seen[word] = None
        self._rare = {w: found is not None for w, found in seen.items()}
        self._everything = True
        self.passes += 1

    def _is_rare(self, word: str) -> bool:
        return self._rare.get(word, False)  # after the full count, a word absent is in no summary

    def problems(self, text: str, members: np.ndarray) -> list[str]:
        bad = self.base.problems(text, members)
        words = self._WORD.findall(text)
        self._count({w.lower() for w in words})
        rare = [w for w in words if self._is_rare(w.lower())]
        return list(dict.fromkeys(bad + rare))


def published_text_checker(ctx: "RunContext", account_index: np.ndarray) -> Any:
    """The checker of published names and descriptions (the privacy stage's, and what the hierarchy may
    show its naming model): `policy.TextChecker` over accounts, or `SharedCallChecker` over call buckets
    when the facets stage shared calls."""
    from convoscope import policy

    units = word_check_units(ctx, account_index)
    texts = list(analysis_texts(ctx))
    if units is account_index:
        return policy.TextChecker(texts, account_index, ctx.config.privacy)
    return SharedCallChecker(texts, units, ctx.config.privacy)


def _facet_column(ctx: "RunContext") -> str:
    name = ctx.hierarchy_facet
    return name if name in ("request", "task") else f"facet.{name}"
