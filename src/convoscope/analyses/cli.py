"""Commands: `convoscope analyze usage|languages|concerning|coordination|classifier RUN` and
`convoscope compare RUN_BEFORE RUN_AFTER | RUN --split-at DATE`. Each prints a table, or one JSON
object with `--json`. See docs/analyses.md."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from convoscope.analyses.common import AnalysisError, console, load_run, parse_date, print_json

analyze_app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
                          help="Analyses over a finished run, from its published aggregates (only published clusters appear). See docs/analyses.md.")

RunArg = typer.Argument(..., help="Run directory (from `convoscope run` or `convoscope demo`).", exists=True, file_okay=False)
JsonOpt = typer.Option(False, "--json", help="Print one JSON object instead of tables.")
LevelOpt = typer.Option(None, "--level", "-l", help="Hierarchy level: 0 is the top; default the base (finest) level.")
TopOpt = typer.Option(15, "--top", "-n", help="Rows per table.")
FacetOpt = typer.Option(None, "--facet", help="Which hierarchy, when the run built several (default: the primary one).")


@analyze_app.command("usage")
def usage_command(run: Path = RunArg, facet: Optional[str] = FacetOpt, levels: int = typer.Option(2, "--levels", help="How many levels from the top to show."), as_json: bool = JsonOpt) -> None:
    """Top-level and second-level clusters: shares of conversations and of accounts, with 95% Wilson intervals."""
    from convoscope.analyses.usage import print_usage, usage

    result = usage(load_run(run, facet), levels=levels)
    print_json(result) if as_json else print_usage(result, console())


@analyze_app.command("languages")
def languages_command(
    run: Path = RunArg, facet: Optional[str] = FacetOpt, level: Optional[int] = LevelOpt,
    min_support: int = typer.Option(10, "--min-support", help="Over: at least this many conversations of the language in the cluster; under: an expected count at least this."),
    min_language: int = typer.Option(30, "--min-language", help="Analyse a language only with at least this many conversations."),
    top: int = typer.Option(3, "--top", "-n", help="Clusters per language and direction."), as_json: bool = JsonOpt,
) -> None:
    """Per language, the clusters where it is most over- and under-represented (cluster share / overall share)."""
    from convoscope.analyses.languages import languages, print_languages

    result = languages(load_run(run, facet), level=level, min_support=min_support, min_language=min_language, top=top)
    print_json(result) if as_json else print_languages(result, console())


@analyze_app.command("concerning")
def concerning_command(
    run: Path = RunArg, facet: Optional[str] = FacetOpt, level: Optional[int] = LevelOpt, top: int = TopOpt,
    min_conversations: int = typer.Option(0, "--min-conversations", help="Leave out clusters with fewer rated conversations."), as_json: bool = JsonOpt,
) -> None:
    """Clusters ranked by mean concerning score and by share rated 4-5 (needs a run made with --llm)."""
    from convoscope.analyses.concerning import concerning, print_concerning

    result = concerning(load_run(run, facet), level=level, top=top, min_conversations=min_conversations)
    print_json(result) if as_json else print_concerning(result, console())


@analyze_app.command("coordination")
def coordination_command(
    run: Path = RunArg, facet: Optional[str] = FacetOpt,
    rate_ratio: float = typer.Option(3.0, "--rate-ratio", help="(a) Flag a cluster whose conversations per account are at least this multiple of the run's."),
    min_template_accounts: int = typer.Option(5, "--min-template-accounts", help="(b) Fewest distinct accounts in a reported group (never below the run's min_accounts)."),
    burst_z: float = typer.Option(4.0, "--burst-z", help="(c) Poisson z-score for a burst."),
    min_burst: int = typer.Option(10, "--min-burst", help="(c) Fewest conversations in a burst bucket."),
    top: int = TopOpt, as_json: bool = JsonOpt,
) -> None:
    """Signals of coordinated or automated use: concentrated clusters, near-identical templates across accounts, bursts in time."""
    from convoscope.analyses.coordination import coordination, print_coordination

    result = coordination(load_run(run, facet), rate_ratio=rate_ratio,
                          min_template_accounts=min_template_accounts, burst_z=burst_z, min_burst=min_burst, top=top)
    print_json(result) if as_json else print_coordination(result, console())


@analyze_app.command("classifier")
def classifier_command(
    run: Path = RunArg, facet: Optional[str] = FacetOpt,
    flag_field: str = typer.Option(..., "--flag-field", "-f", help="Metadata field of the input holding the classifier's flag."),
    level: Optional[int] = LevelOpt,
    min_conversations: int = typer.Option(10, "--min-conversations", help="Leave out clusters with fewer conversations with a known flag / a score."),
    concern_high: float = typer.Option(2.5, "--concern-high", help="Likely miss: mean concern at least this ..."),
    flag_low: float = typer.Option(0.1, "--flag-low", help="... and flag rate at most this."),
    flag_high: float = typer.Option(0.5, "--flag-high", help="Likely false alarm: flag rate at least this ..."),
    concern_low: float = typer.Option(1.5, "--concern-low", help="... and mean concern at most this."),
    top: int = typer.Option(20, "--top", "-n", help="Rows in the table."), as_json: bool = JsonOpt,
) -> None:
    """Per cluster, the classifier's flag rate vs the mean concerning score; correlation, likely misses and false alarms."""
    from convoscope.analyses.classifier import classifier, print_classifier

    result = classifier(load_run(run, facet), flag_field, level=level, min_conversations=min_conversations, concern_high=concern_high,
                        flag_low=flag_low, flag_high=flag_high, concern_low=concern_low)
    print_json(result) if as_json else print_classifier(result, console(), top=top)


def compare_command(
    run_before: Path = typer.Argument(..., help="Run directory (the earlier period, or the only run with --split-at).", exists=True, file_okay=False),
    run_after: Optional[Path] = typer.Argument(None, help="Run directory of the later period (omit with --split-at).", exists=True, file_okay=False),
    split_at: Optional[str] = typer.Option(None, "--split-at", help="Split one run at this date (YYYY-MM-DD), rounded down to the run's published time bucket (day, week or month): before vs from it on."),
    level: Optional[int] = typer.Option(None, "--level", "-l", help="Hierarchy level: 0 is the top; default the base (finest) level."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level (Bonferroni-corrected over clusters)."),
    match_threshold: float = typer.Option(0.8, "--match-threshold", help="Two runs: cosine of 'name: description' embeddings to match clusters whose names differ."),
    top: int = typer.Option(20, "--top", "-n", help="Rows in the table."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    facet: Optional[str] = FacetOpt,
) -> None:
    """Clusters that appeared, grew or shrank most between two periods (two runs, or one run split by date), with a two-proportion z-test."""
    from convoscope.analyses.compare import compare_runs, compare_split, print_compare

    if (run_after is None) == (split_at is None):
        raise AnalysisError("give either two run directories (RUN_BEFORE RUN_AFTER) or one run and --split-at DATE")
    if split_at is not None:
        result = compare_split(load_run(run_before, facet), parse_date(split_at), level=level, alpha=alpha)
    else:
        result = compare_runs(load_run(run_before, facet), load_run(run_after, facet), level=level, alpha=alpha, match_threshold=match_threshold)
    print_json(result) if as_json else print_compare(result, console(), top=top)
