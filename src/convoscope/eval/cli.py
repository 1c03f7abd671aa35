"""`convoscope eval ...`: reconstruction, privacy and synthetic-data commands (docs/evaluation.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

eval_app = typer.Typer(no_args_is_help=True, add_completion=False,
                       help="Evaluate the pipeline: recover known categories (reconstruction), compare extractive names (names), test the privacy layers with planted details (privacy), make labelled synthetic data (synthesize).")
err = Console(stderr=True)


def _config(config: Optional[Path], overrides: dict):
    from convoscope.config import load_config

    return load_config(config, overrides)


PRIVACY_EVAL_PER_CLUSTER = 20


def privacy_eval_config(config: Optional[Path], llm: Optional[str], per_cluster: Optional[int]):
    """The privacy evaluation's settings: small base clusters unless the flag or the config file says otherwise."""
    cfg = _config(config, {"llm.facets": llm, "cluster.conversations_per_cluster": per_cluster})
    if per_cluster is None and "conversations_per_cluster" not in cfg.cluster.model_fields_set:
        cfg.cluster.conversations_per_cluster = PRIVACY_EVAL_PER_CLUSTER
    return cfg


@eval_app.command()
def reconstruction(
    input: Path = typer.Argument(..., help="Labelled conversations (the label is a field of each record or of its metadata)."),
    label_field: str = typer.Option(..., "--label-field", help="Field holding each conversation's gold category."),
    parent_field: Optional[str] = typer.Option(None, "--parent-field", help="Field holding a coarser gold category; when given it is the gold top level."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Run directory (created; re-runs resume)."),
    llm: Optional[str] = typer.Option(None, "--llm", help="LLM backend for every role (default: extractive mode, no LLM)."),
    embedding: Optional[str] = typer.Option(None, "--embedding", help="Embedding model (default: use-multilingual)."),
    top_clusters: Optional[int] = typer.Option(None, "--top-clusters", help="Wanted number of top-level clusters (default: the pipeline's)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML config file."),
    no_baseline: bool = typer.Option(False, "--no-baseline", help="Skip the k-means + agglomerative baseline."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Run the pipeline on labelled data; report accuracy with the top level fixed to the gold categories (overall and per language), NMI/ARI/purity per level, withheld share, and a naive baseline."""
    from convoscope.eval.reconstruction import evaluate_reconstruction, format_summary

    cfg = _config(config, {"llm.facets": llm, "embedding.model": embedding, "hierarchy.top_clusters": top_clusters})
    result = evaluate_reconstruction(input, out_dir, cfg, label_field=label_field, parent_field=parent_field, console=err,
                                     show_progress=not quiet, with_baseline=not no_baseline)
    if as_json:
        print(json.dumps(result))
    else:
        for line in format_summary(result):
            print(line)


@eval_app.command()
def names(
    input: Path = typer.Argument(..., help="Conversations to run (or a finished run's input)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Run directory (created; re-runs resume)."),
    taxonomy: Optional[str] = typer.Option(None, "--taxonomy", help="Label clusters from a taxonomy: 'default' (bundled) or a TOML file."),
    top: int = typer.Option(15, "--top", help="Largest published base clusters to show."),
    score_taxonomy: Optional[str] = typer.Option(None, "--score-taxonomy", help="Also score a taxonomy's labels ('default' or a TOML file) against --label-field, without changing the run."),
    label_field: Optional[str] = typer.Option(None, "--label-field", help="Gold field (of each record or its metadata) for --score-taxonomy."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML config file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Extractive names before (distinctive terms) and after (phrases) on the same clusters of one run, side by side."""
    from convoscope.eval.names import compare_names, format_names

    cfg = _config(config, {"naming.taxonomy": taxonomy})
    if bool(score_taxonomy) != bool(label_field):
        err.print("[red]--score-taxonomy and --label-field go together[/]")
        raise typer.Exit(2)
    result = compare_names(input, out_dir, cfg, top=top, console=err, show_progress=not quiet, score_taxonomy_spec=score_taxonomy, label_field=label_field)
    if as_json:
        print(json.dumps(result))
    else:
        for line in format_names(result):
            print(line)


@eval_app.command()
def privacy(
    input: Optional[Path] = typer.Argument(None, help="Conversations to plant details in (default: the bundled demo data)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Working directory: the planted input and the run (in run/) go here."),
    llm: Optional[str] = typer.Option(None, "--llm", help="LLM backend (default: extractive mode). With --auditor-only: the auditor."),
    sample: int = typer.Option(600, "--sample", help="Conversations sampled from the input before planting."),
    auditor_only: bool = typer.Option(False, "--auditor-only", help="Only measure the privacy auditor's accuracy on the bundled labelled descriptions (needs --llm)."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Labelled descriptions for --auditor-only (default: the bundled set)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML config file."),
    seed: int = typer.Option(0, "--seed", help="Seed for sampling and planting."),
    per_cluster: Optional[int] = typer.Option(None, "--per-cluster", help=f"Conversations per base cluster (default {PRIVACY_EVAL_PER_CLUSTER}, unless the config file sets cluster.conversations_per_cluster: small clusters stress the privacy gates; the pipeline default is 100)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Plant personal details (and prompt injections) in real conversations, run the pipeline, and report the share that survives in each layer; or measure the auditor's accuracy."""
    from convoscope.eval import privacy as priv

    cfg = privacy_eval_config(config, llm, per_cluster)
    if auditor_only:
        if not cfg.llm_mode:
            err.print("[red]--auditor-only needs --llm SPEC[/]")
            raise typer.Exit(2)
        result = priv.auditor_accuracy(cfg.llm, labels, threshold=cfg.privacy.min_audit_score, progress=not quiet)
        lines = priv.format_auditor(result)
    else:
        result = priv.evaluate_privacy(input, out_dir, cfg, sample=sample, seed=seed, console=err, show_progress=not quiet)
        lines = priv.format_summary(result)
    if as_json:
        print(json.dumps(result))
    else:
        for line in lines:
            print(line)


@eval_app.command()
def synthesize(
    categories: str = typer.Option(..., "--categories", help="Comma-separated top-level categories, e.g. 'Cooking,Travel,Taxes'."),
    llm: str = typer.Option(..., "--llm", help="LLM backend that writes the data."),
    out: Path = typer.Option(..., "--out", "-o", help="Output JSONL file (OpenAI message format, labelled metadata)."),
    per_category: int = typer.Option(20, "--per-category", help="Conversations per top-level category."),
    subcategories: int = typer.Option(4, "--subcategories", help="Subcategories generated per category."),
    languages: str = typer.Option("English", "--languages", help="Comma-separated languages, cycled over the conversations."),
    seed: int = typer.Option(0, "--seed", help="Seed for the length / tone / language draws."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Generate labelled synthetic conversations the paper's way: categories -> subcategories -> prompts (varied length, tone, language) -> conversations."""
    from convoscope.eval.synthetic import synthesize as run_synthesize
    from convoscope.llm import LLMSettings

    cats = [c.strip() for c in categories.split(",") if c.strip()]
    langs = [c.strip() for c in languages.split(",") if c.strip()]
    settings = LLMSettings(facets=llm)
    stats = run_synthesize(cats, settings, out, per_category=per_category, n_subcategories=subcategories, languages=langs, seed=seed,
                           progress=not quiet)
    err.print(f"wrote {stats['conversations']:,} conversations to {out} ({stats['failed']} failed requests skipped)")
    err.print(f"  evaluate: convoscope eval reconstruction {out} --label-field subcategory --parent-field category --llm {llm} --out runs/synthetic")
