"""Command line: `convoscope run | assign | demo | validate | report | explore | serve | estimate | config | eval | analyze | compare`."""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from convoscope.errors import ConvoscopeError
from convoscope.text import markup_safe
from convoscope.wording import count

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
                  help="Privacy-preserving insights into how an AI assistant is used (an open implementation of Anthropic's Clio).")
err = Console(stderr=True)
out = Console()

def _version() -> str:
    from convoscope import __version__

    return __version__


def _print_version(value: bool) -> None:
    if value:
        print(f"convoscope {_version()}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: bool = typer.Option(False, "--version", "-V", help="Print the version and exit.", callback=_print_version, is_eager=True),
) -> None:
    pass


ConfigOpt = typer.Option(None, "--config", "-c", help="TOML config file (see `convoscope config --show`).", exists=False)
FormatOpt = typer.Option(None, "--format", "-f", help="Input format; detected from the content when omitted.")


PoolMissingOpt = typer.Option(
    False, "--pool-missing-accounts",
    help="Input mixing conversations with and without an account id: count all those without one as ONE shared "
         "account (default: refuse such input, since each would count as an account of its own).")


def _ingest_overrides(fmt: str | None, skip_invalid: bool | None, account_field: str | None = None, time_field: str | None = None,
                      pool_missing_accounts: bool = False) -> dict[str, Any]:
    return {"ingest.format": fmt, "ingest.skip_invalid": True if skip_invalid else None,
            "ingest.account_field": account_field, "ingest.time_field": time_field,
            "ingest.missing_accounts": "pool" if pool_missing_accounts else None}


def _load(config: Optional[Path], overrides: dict[str, Any]):
    from convoscope.config import load_config

    return load_config(config, overrides)


def llm_usage_line(usage: dict[str, Any]) -> str:
    """Calls, tokens and cost of a run's LLM use; a model without a known price makes the cost 'unknown',
    not the $0 it is counted as."""
    total = usage.get("total", usage)
    unpriced = sorted({r.get("backend", name) for name, r in usage.get("roles", {}).items() if not r.get("price_known", True)})
    priced = any(r.get("price_known", True) for r in usage.get("roles", {}).values()) or not unpriced
    cost = f"${total.get('cost_usd', 0):.4f}" if priced else "cost unknown"
    if unpriced:
        cost += f" (no price known for {', '.join(unpriced)}{'; not counted' if priced else ''})"
    return (f"{count(total.get('calls', 0), 'call')} ({total.get('cached_calls', 0):,} from cache), "
            f"{count(total.get('input_tokens', 0), 'token')} in, {total.get('output_tokens', 0):,} out, {cost}")


def ingest_notes(report: dict[str, Any]) -> list[str]:
    """What reading the input left out, for the run summary: files of a directory that hold no conversations
    (listed in the manifest, but a user reads the terminal) and exact duplicates."""
    notes = []
    skipped = report.get("skipped_files") or []
    if skipped:
        more = f"; and {len(skipped) - 3:,} more (manifest.json, stages.ingest.report)" if len(skipped) > 3 else ""
        notes.append(f"skipped {count(len(skipped), 'file')} of the input holding no conversations: {'; '.join(skipped[:3])}{more}")
    if report.get("duplicates"):
        notes.append(f"removed {count(report['duplicates'], 'exact duplicate conversation')}")
    return notes


def release_counts(agg: dict[str, Any]) -> str:
    """The run summary's counts, from the release: in DP mode they are noisy, not the numbers read, and say so."""
    run = agg["run"]
    noisy = " (noisy counts: differential privacy)" if run.get("privacy") == "dp" else ""
    return (f"{noisy}: {count(run['conversations'], 'conversation')}, {count(run['accounts'], 'account')}, {count(run['levels'], 'level')}, "
            f"{count(sum(1 for c in agg['clusters'] if c['kind'] == 'cluster'), 'published cluster')}, "
            f"{agg['withheld']['clusters']} withheld ({count(agg['withheld']['conversations'], 'conversation')} in 'other').")


def _print_run_summary(store) -> None:
    m = store.manifest
    ingest = m["stages"]["ingest"]["report"]
    agg = store.read_json("aggregates")
    err.print(f"[green]Done[/] in {m.get('seconds', 0):.1f}s{escape(release_counts(agg))}")
    for line in ingest_notes(ingest):
        err.print(f"  {escape(line)}")
    usage = m.get("llm_usage")
    if usage:
        err.print(f"  LLM: {escape(llm_usage_line(usage))}")
    for facet in store.facets()[1:]:
        sub = store.facet_store(facet)
        agg = sub.read_json("aggregates")
        err.print(f"  hierarchy on '{escape(facet)}': {count(agg['run']['levels'], 'level')}, {count(sum(1 for c in agg['clusters'] if c['kind'] == 'cluster'), 'published cluster')}, "
                  f"{agg['withheld']['clusters']} withheld ({escape(str(sub.root))}; report/explore it with --facet {escape(facet)})")
    err.print(f"  run directory: {escape(str(store.root))}")


FacetOpt = typer.Option(None, "--facet", help="Which hierarchy, when the run built several (default: the primary one).")
ExplorerFacetOpt = typer.Option(None, "--facet", help="Only this hierarchy, when the run built several (default: all of them, with a switcher).")


@app.command()
def run(
    input: Path = typer.Argument(..., help="Conversations: a file or a directory (JSONL, JSON, CSV, Parquet, .gz)."),
    out_dir: Path = typer.Option(Path("runs/latest"), "--out", "-o", help="Run directory (created; re-runs resume)."),
    config: Optional[Path] = ConfigOpt,
    fmt: Optional[str] = FormatOpt,
    llm: Optional[str] = typer.Option(None, "--llm", help="Backend for every LLM role, e.g. anthropic:claude-3-5-haiku-latest, openai:gpt-4o-mini, openai:MODEL@http://localhost:8000/v1, llamacpp:/path/model.gguf, or none (extractive)."),
    naming_llm: Optional[str] = typer.Option(None, "--naming-llm", help="A stronger backend for naming and the hierarchy."),
    auditor_llm: Optional[str] = typer.Option(None, "--auditor-llm", help="Backend for the privacy auditor."),
    embedding: Optional[str] = typer.Option(None, "--embedding", help="Embedding model (default: use-multilingual, bundled)."),
    taxonomy: Optional[str] = typer.Option(None, "--taxonomy", help="Extractive mode: label clusters with the clearly closest taxonomy entry, phrases kept as detail: 'default' (bundled, common assistant tasks) or a TOML file of [[task]] label/description entries."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip malformed records (counted and reported) instead of stopping."),
    account_field: Optional[str] = typer.Option(None, "--account-field", help="Input field holding the account (user) id."),
    time_field: Optional[str] = typer.Option(None, "--time-field", help="Input field holding the creation time."),
    pool_missing_accounts: bool = PoolMissingOpt,
    screener: Optional[str] = typer.Option(None, "--screen", help="Yes/no question selecting the conversations to analyse (needs --llm)."),
    hierarchies: Optional[str] = typer.Option(None, "--hierarchies", help="Comma-separated open-text facets to build a hierarchy for, the primary first (default: request; others need --llm), e.g. request,task."),
    max_cost: Optional[float] = typer.Option(None, "--max-cost", help="Stop cleanly before spending more than this many USD."),
    batch: bool = typer.Option(False, "--batch", help="Facets, screener and audits through the provider's batch API (anthropic/openai): half price, answers within 24 hours; a rerun resumes polling."),
    conversations_per_call: Optional[int] = typer.Option(None, "--conversations-per-call", help="LLM mode: conversations summarised per facets call (default 1; 4 costs about a quarter less, see docs/llm.md). Calls share only within an account bucket and word checks then count buckets (docs/privacy.md)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the LLM/embedding cache."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Cache location (default: ~/.cache/convoscope, or $CONVOSCOPE_CACHE_DIR)."),
    include_raw_text: bool = typer.Option(False, "--include-raw-text", help="Also store raw conversation text in the run directory (never in the explorer). Off by default."),
    min_accounts: Optional[int] = typer.Option(None, "--min-accounts", help="Privacy threshold: distinct accounts per published cluster (default 5)."),
    min_conversations: Optional[int] = typer.Option(None, "--min-conversations", help="Privacy threshold: conversations per published cluster (default 15)."),
    privacy: Optional[str] = typer.Option(None, "--privacy", help="thresholds (default: account and cell gates) or dp (differential privacy at the account level, with --epsilon and --delta)."),
    epsilon: Optional[float] = typer.Option(None, "--epsilon", help="With --privacy dp: the run's privacy budget epsilon per account (default 1)."),
    delta: Optional[float] = typer.Option(None, "--delta", help="With --privacy dp: the run's delta (default 1e-6)."),
    engine: Optional[str] = typer.Option(None, "--engine", help="Where the per-conversation stages run: local (default) or ray (docs/scale.md)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="With --engine ray: the cluster to join (e.g. auto, ray://HEAD:10001); default: a local Ray."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Run the whole pipeline: ingest, facets, embeddings, clusters, names, hierarchy, privacy gates, map."""
    from convoscope.api import Pipeline

    overrides = _ingest_overrides(fmt, skip_invalid, account_field, time_field, pool_missing_accounts)
    overrides.update({"llm.facets": llm, "llm.naming": naming_llm, "llm.auditor": auditor_llm, "embedding.model": embedding, "naming.taxonomy": taxonomy,
                      "facets.screener": screener, "llm.max_cost_usd": max_cost, "llm.cache": False if no_cache else None,
                      "llm.batch": True if batch else None, "facets.conversations_per_call": conversations_per_call, "embedding.cache": False if no_cache else None, "llm.cache_dir": str(cache_dir) if cache_dir else None,
                      "privacy.include_raw_text": True if include_raw_text else None, "privacy.min_accounts": min_accounts,
                      "privacy.min_conversations": min_conversations, "privacy.mode": privacy, "privacy.epsilon": epsilon, "privacy.delta": delta, "engine.kind": engine, "engine.ray_address": ray_address,
                      "facets.hierarchy_facets": [f.strip() for f in hierarchies.split(",") if f.strip()] if hierarchies else None})
    cfg = _load(config, overrides)
    result = Pipeline(cfg, console=err, progress=not quiet).fit(input, out=out_dir)  # the Python API (docs/api.md)
    _print_run_summary(result.store)
    err.print(f"  next: convoscope report {escape(str(out_dir))}   |   convoscope explore {escape(str(out_dir))}")


@app.command()
def assign(
    run_dir: Path = typer.Argument(..., help="A finished run directory whose clusters the new conversations are placed in."),
    new_input: Path = typer.Argument(..., help="The new conversations: a file or a directory (JSONL, JSON, CSV, Parquet, .gz)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Run directory for the new data (created; not RUN; re-runs resume)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Cosine similarity to the nearest base-cluster centroid below which a conversation goes to 'Unassigned (new topic)' (default: the 5th percentile of RUN's own members' similarity to their centroid)."),
    fmt: Optional[str] = FormatOpt,
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip malformed records (counted and reported) instead of stopping."),
    account_field: Optional[str] = typer.Option(None, "--account-field", help="Input field holding the account (user) id (default: RUN's setting)."),
    time_field: Optional[str] = typer.Option(None, "--time-field", help="Input field holding the creation time (default: RUN's setting)."),
    pool_missing_accounts: bool = PoolMissingOpt,
    llm: Optional[str] = typer.Option(None, "--llm", help="LLM mode: another endpoint for the facet model (default: RUN's; use the same model, or the summaries will not be comparable)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Place new conversations into a finished run's clusters, without rebuilding its hierarchy ("where do this week's conversations go?"): RUN's settings, embedding model and names; counts on the new data under the same privacy gates. Then `convoscope compare RUN NEW_RUN` shows what grew, shrank or appeared."""
    from convoscope.assign import assign as assign_new

    overrides = {**_ingest_overrides(fmt, skip_invalid, account_field, time_field, pool_missing_accounts), "llm.facets": llm}
    store = assign_new(run_dir, new_input, out_dir, threshold=threshold, config_overrides=overrides, show_progress=not quiet, console=err)
    _print_run_summary(store)
    placed = store.stage_record("cluster") or {}
    err.print(f"  placed {placed.get('assigned', 0):,} conversations in the run's clusters, {placed.get('unassigned', 0):,} in "
              f"'Unassigned (new topic)' (similarity threshold {placed.get('threshold', 0):.3f}: {escape(str(placed.get('threshold_source', '')))})")
    err.print(f"  next: convoscope compare {escape(str(run_dir))} {escape(str(out_dir))}   |   convoscope report {escape(str(out_dir))}")


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run directory for the demo."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Run the pipeline on the bundled demo data (real hh-rlhf and Arena-Hard conversations), with no API key and no server, and write the explorer."""
    from convoscope.config import Config
    from convoscope.explorer import write_explorer
    from convoscope.pipeline import run_pipeline

    data = resources.files("convoscope").joinpath("data/demo.jsonl.gz")
    with resources.as_file(data) as path:
        err.print(f"Demo: {path.name} (3,062 real conversations, extractive mode: no LLM, bundled embedding model)")
        store = run_pipeline(path, out_dir, Config(), console=err, show_progress=not quiet)
    _print_run_summary(store)
    html = write_explorer(Path(out_dir))
    err.print(f"  explorer: {html}  (open it in a browser; it works offline)")
    err.print(f"  report:   convoscope report {out_dir}")


@app.command()
def validate(
    input: Path = typer.Argument(..., help="File or directory to check."),
    fmt: Optional[str] = FormatOpt,
    config: Optional[Path] = ConfigOpt,
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Count malformed records instead of stopping at the first."),
    account_field: Optional[str] = typer.Option(None, "--account-field", help="Input field holding the account (user) id."),
    time_field: Optional[str] = typer.Option(None, "--time-field", help="Input field holding the creation time."),
    pool_missing_accounts: bool = PoolMissingOpt,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Read every conversation and report format, counts, duplicates, invalid records and conversations without an account id. Exit 0 when valid, 1 when not (invalid records, or input a run would refuse)."""
    from convoscope.ingest import validate_input

    cfg = _load(config, _ingest_overrides(fmt, True, account_field, time_field, pool_missing_accounts=pool_missing_accounts))
    try:
        report = validate_input(input, cfg.ingest)
    except ConvoscopeError as e:
        if as_json:
            print(json.dumps({"valid": False, "error": str(e), "format": fmt, "conversations": 0, "invalid": 1, "duplicates": 0}))
            raise typer.Exit(1)
        raise
    data = report.to_dict()
    valid = data.get("invalid", 0) == 0 and data.get("conversations", 0) > 0 and not report.account_problem
    if as_json:
        print(json.dumps({"valid": valid, **data}, default=str))
    else:
        table = Table(show_header=False, box=None)
        for key, value in data.items():
            if key != "account_problem":  # printed in full below
                table.add_row(key, escape(_plain(value)))
        out.print(table)
        _print_account_note(report)
        out.print("[green]valid[/]" if valid else "[red]invalid[/]")
    raise typer.Exit(0 if valid else 1)


def _plain(value: Any) -> str:
    """A validate value as a person reads it (the --json output keeps the JSON types)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return "\n".join(map(str, value)) if value else "none"
    return str(value)


def _print_account_note(report) -> None:
    """What the privacy thresholds will count, in one line."""
    n = report.without_account
    if report.account_ids == "mixed":
        out.print(f"[red]a run refuses this input:[/] {escape(report.account_problem or '')}", highlight=False)
    elif report.account_ids == "pooled":
        out.print(f"[yellow]note:[/] {n:,} conversations without an account id count as ONE shared account (--pool-missing-accounts)")
    elif report.account_ids == "absent":
        out.print(f"[yellow]note:[/] no account ids: each of the {n:,} conversations counts as its own account, so the privacy thresholds count conversations")


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="Run directory."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    depth: int = typer.Option(2, "--depth", help="Levels of the tree to print."),
    facet: Optional[str] = FacetOpt,
) -> None:
    """Print the published hierarchy: names, sizes, shares and facet breakdowns."""
    from convoscope.report import print_report, report_json

    from convoscope.store import RunStore

    store = RunStore(run_dir).for_facet(facet)
    store.require_finished()
    if as_json:
        print(json.dumps(report_json(store), indent=2, default=str))
    else:
        print_report(store, out, depth=depth)


@app.command()
def explore(
    run_dir: Path = typer.Argument(..., help="Run directory."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="HTML file to write (default: RUN/explorer.html, or the facet's directory)."),
    facet: Optional[str] = ExplorerFacetOpt,
) -> None:
    """Write the explorer: one self-contained, offline HTML file (map, tree, cluster panel, search). A run with several hierarchies gets one page with a switcher between them; --facet writes only that one."""
    from convoscope.explorer import write_explorer
    from convoscope.store import RunStore

    store = RunStore(run_dir)
    names = [facet] if facet else store.facets()
    for name in names:
        store.for_facet(name).require_finished()
    path = write_explorer(store.root, output, facet=facet)
    label = f" (hierarchy on '{facet}')" if facet else (f" (hierarchies: {', '.join(names)})" if len(names) > 1 else "")
    err.print(f"explorer written to {escape(str(path))} ({path.stat().st_size / 1e6:.1f} MB){escape(label)}")


@app.command()
def serve(
    run_dir: Path = typer.Argument(..., help="Run directory."),
    port: int = typer.Option(8765, "--port", "-p", help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (default: this machine only). A name or address other than loopback is also accepted in the Host header."),
    allow_host: Optional[list[str]] = typer.Option(None, "--allow-host", help="Also answer requests whose Host header names this (repeatable), e.g. the machine's name when binding 0.0.0.0."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a browser."),
    facet: Optional[str] = ExplorerFacetOpt,
) -> None:
    """Serve the explorer from the run directory (for runs too large to inline); every hierarchy of the run (with a switcher), or only --facet's. Only requests addressed to localhost (or to --host / --allow-host names) are answered, against DNS rebinding."""
    from convoscope.explorer import serve as serve_explorer
    from convoscope.store import RunStore

    store = RunStore(run_dir)
    for name in ([facet] if facet else store.facets()):
        store.for_facet(name).require_finished()
    serve_explorer(store.root, port=port, host=host, open_browser=not no_browser,
                   allow_hosts=allow_host or (), facet=facet)


@app.command()
def estimate(
    input: Path = typer.Argument(..., help="Conversations to estimate for."),
    llm: str = typer.Option(..., "--llm", help="Backend spec to price."),
    naming_llm: Optional[str] = typer.Option(None, "--naming-llm", help="Backend spec for naming and the hierarchy, when not --llm's."),
    config: Optional[Path] = ConfigOpt,
    fmt: Optional[str] = FormatOpt,
    pool_missing_accounts: bool = PoolMissingOpt,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Count tokens and estimate calls, cost and time of an LLM run, without calling anything."""
    from convoscope.ingest import read_conversations
    from convoscope.llm import CallPlan
    from convoscope.llm import estimate as estimate_cost

    cfg = _load(config, {**_ingest_overrides(fmt, None, pool_missing_accounts=pool_missing_accounts), "llm.facets": llm, "llm.naming": naming_llm})
    plan = CallPlan.from_config(cfg)  # the run's own rules: levels, privacy gates for audits, custom facets, screener
    result = estimate_cost(read_conversations(input, cfg.ingest), cfg.llm, plan)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    table = Table(title=f"Estimate for {input} with {llm}")
    for col in ("stage", "calls", "input tokens", "output tokens", "cost (USD)"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    stages = result["stages"].values()
    priced = [s.get("price_known", True) and s.get("cost_usd") is not None for s in stages]  # an unknown price is counted as $0
    for (name, s), known in zip(result["stages"].items(), priced):
        table.add_row(name, f"{s['calls']:,}", f"{s['input_tokens']:,}", f"{s['output_tokens']:,}", f"{s['cost_usd']:.2f}" if known else "unknown")
    out.print(table)
    total = result["total"]
    cost = f"${total['cost_usd']:.2f}" + ("" if all(priced) else " for the stages with a known price") if any(priced) else "cost unknown"
    out.print(f"total: {total['calls']:,} calls, {total['input_tokens']:,} input tokens, {total['output_tokens']:,} output tokens, "
              f"{cost}; about {result['time_s'] / 60:.1f} minutes at {cfg.llm.max_concurrency} requests in flight")
    if total.get("cost_usd_batch") is not None and any(priced):
        out.print(f"with prompt caching ${total['cost_usd_cached']:.2f}; with --batch ${total['cost_usd_batch']:.2f} "
                  f"(${total['cost_usd_batch_cached']:.2f} with caching; batches take up to 24 hours)")
    out.print(f"[dim]{result['conversations']:,} conversations; tokens counted by {escape(result['token_counter'])}; nothing was sent[/]")
    for note in dict.fromkeys(result.get("notes", [])):  # one per backend, not one per stage that uses it
        out.print(f"[yellow]note:[/] {escape(note)}")


def _parse_set(assignments: list[str]) -> dict[str, Any]:
    """`--set privacy.min_accounts=10` -> {"privacy.min_accounts": 10}: the value is read as TOML, else as a string."""
    from convoscope.config import tomllib
    from convoscope.errors import ConfigError

    overrides: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item}: expected SECTION.SETTING=VALUE, e.g. privacy.min_accounts=10")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        overrides[key.strip()] = value
    return overrides


@app.command("config")
def config_cmd(
    show: bool = typer.Option(False, "--show", help="Print the effective configuration (defaults, then --config FILE, then --set) as TOML that --config reads back."),
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override one setting, e.g. --set privacy.min_accounts=10 (repeatable; the value is read as TOML, else as text)."),
) -> None:
    """Without --show: a table of every setting with its value and meaning. With --show: the effective configuration as TOML."""
    from convoscope.config import describe_settings, dump_toml

    cfg = _load(config, _parse_set(set_ or []))
    if show:
        source = f"from {config}" if config else "defaults"
        header = f"convoscope {_version()}: effective configuration ({source}{', with --set' if set_ else ''}); use it with --config FILE"
        print(dump_toml(cfg, header), end="")
        return
    table = Table(title="convoscope settings" + (f" ({escape(str(config))})" if config else ""))
    table.add_column("setting", style="bold")
    table.add_column("value")
    table.add_column("meaning")
    values = cfg.model_dump(mode="json")
    for dotted, _default, meaning in describe_settings():
        node: Any = values
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        table.add_row(dotted, escape(json.dumps(node)), escape(meaning))
    out.print(table)


from convoscope.analyses.cli import analyze_app, compare_command  # noqa: E402
from convoscope.eval.cli import eval_app  # noqa: E402

app.add_typer(analyze_app, name="analyze")
app.command("compare")(compare_command)
app.add_typer(eval_app, name="eval")


INTERRUPTED = 130  # the shell's code for SIGINT; typer turns a KeyboardInterrupt into this exit code


def _print_interrupted() -> None:
    import shlex

    command = shlex.join(["convoscope", *sys.argv[1:]])
    err.print(f"[yellow]interrupted[/]: finished work is saved; run the same command again to resume: {escape(command)}", highlight=False, soft_wrap=True)


def main() -> None:
    try:
        app()
    except ConvoscopeError as e:
        message = "\n".join(markup_safe(line) for line in str(e).splitlines())  # messages quote input: print them as text
        err.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)  # one line: the terminal wraps it, not us
        sys.exit(e.exit_code)
    except KeyboardInterrupt:  # outside typer's own handling (e.g. while starting)
        _print_interrupted()
        sys.exit(INTERRUPTED)
    except SystemExit as e:
        if e.code == INTERRUPTED:  # typer caught the KeyboardInterrupt and exits 130 without a word
            _print_interrupted()
        raise


if __name__ == "__main__":
    main()
