"""Harness for the adversarial privacy suite (issue 11): realistic background traffic, planted attacks,
the real CLI, and everything an analyst can see of a run.

    records = background()                        # 1,200 real CLINC150 requests, 150 accounts, 120 days
    records += planted(...)                       # an attack
    path = write_records(tmp / "in.jsonl", records)
    run_cli(["run", str(path), "--out", str(run_dir), "--config", str(config_file(tmp)), "--quiet"])
    seen = analyst_outputs(run_dir)               # report (text, json), explorer, serve, analyze *, compare
    assert "Quargmire" not in seen

Every run here uses the privacy defaults (min_accounts 5, min_conversations 15, and whatever defaults
the gates gain: max_account_share, max_conversations_per_account) with small base clusters
(`conversations_per_cluster` 35) so that a planted group of 20-30 conversations forms its own cluster.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import threading
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from typer.testing import CliRunner

DATA = Path(__file__).resolve().parents[1] / "data" / "clinc150_slice.jsonl.gz"
START = datetime(2026, 1, 5, tzinfo=timezone.utc)
DAYS = 120
N_ACCOUNTS = 150
PLANS = ["free", "plus", "pro", "team"]
FLAG_FIELD = "flagged"  # planted metadata field for `analyze classifier --flag-field`
PER_CLUSTER = 35
MIN_ACCOUNTS = 5
MIN_CONVERSATIONS = 15


# -- data -------------------------------------------------------------------------------------------

def clinc_slice() -> list[dict[str, Any]]:
    with gzip.open(DATA, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def background(seed: int = 0, accounts: int = N_ACCOUNTS, days: int = DAYS) -> list[dict[str, Any]]:
    """The CLINC150 slice as records with a seeded account, time, plan, age and flag."""
    rng = random.Random(seed)
    out = []
    for row in clinc_slice():
        out.append({
            "id": row["id"],
            "user": f"acct-{rng.randrange(accounts):03d}",
            "created_at": (START + timedelta(seconds=rng.randrange(days * 86400))).isoformat(),
            "text": row["text"],
            "plan": rng.choice(PLANS),
            "age": rng.randint(18, 70),
            FLAG_FIELD: rng.random() < 0.1,
        })
    return out


def record(id: str, text: str, user: str | None, when: datetime, **meta: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"id": id, "text": text, "created_at": when.isoformat()}
    if user is not None:
        rec["user"] = user
    rec.update({"plan": meta.pop("plan", "plus"), "age": meta.pop("age", 40), FLAG_FIELD: meta.pop(FLAG_FIELD, False), **meta})
    return rec


def spread_times(n: int, seed: int) -> list[datetime]:
    rng = random.Random(seed)
    return [START + timedelta(seconds=rng.randrange(DAYS * 86400)) for _ in range(n)]


def write_records(path: Path, records: Sequence[dict[str, Any]], seed: int = 0) -> Path:
    """JSONL, planted records shuffled into the background (seeded)."""
    rows = list(records)
    random.Random(seed).shuffle(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def config_file(directory: Path, extra: str = "") -> Path:
    """Defaults for privacy, small base clusters. (TOML, so the CLI `run` is used as an analyst would.)"""
    path = Path(directory) / "convoscope.toml"
    path.write_text(f"[cluster]\nconversations_per_cluster = {PER_CLUSTER}\n\n[llm]\ncache = false\n{extra}", encoding="utf-8")
    return path


# -- the CLI ----------------------------------------------------------------------------------------

class CliResult:
    def __init__(self, exit_code: int, output: str):
        self.exit_code = exit_code
        self.output = output

    def __str__(self) -> str:  # pragma: no cover - for assertion messages
        return f"exit {self.exit_code}: {self.output[-3000:]}"


def invoke(args: Sequence[str]) -> CliResult:
    """Run a convoscope command in-process; stdout and stderr together. An uncaught exception is
    rendered as a traceback in the output (so `"Traceback" not in output` catches it)."""
    import traceback

    from convoscope.cli import app

    runner = CliRunner()
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=True)
    text = result.output
    try:
        text += result.stderr
    except (ValueError, AttributeError):
        pass
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # ConvoscopeError is handled by main() in real use (one line, exit code); anything else is a crash
        from convoscope.errors import ConvoscopeError

        if isinstance(result.exception, ConvoscopeError):
            text += f"\nerror: {result.exception}"
        else:
            text += "\n" + "".join(traceback.format_exception(result.exception))
    return CliResult(result.exit_code, text)


def run_cli(args: Sequence[str]) -> str:
    return invoke(args).output


def run_pipeline_cli(input_path: Path, run_dir: Path, *, llm_url: str | None = None, extra_args: Sequence[str] = (),
                     config: Path | None = None) -> CliResult:
    args = ["run", str(input_path), "--out", str(run_dir), "--quiet",
            "--config", str(config or config_file(run_dir.parent))]
    if llm_url:
        args += ["--llm", f"openai:fake@{llm_url}"]
    result = invoke([*args, *extra_args])
    assert result.exit_code == 0 and "Traceback" not in result.output, str(result)
    return result


def serve_responses(run_dir: Path) -> str:
    from convoscope.explorer.server import make_server

    srv = make_server(Path(run_dir), port=0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = srv.server_address[:2]
        chunks = []
        for path in ("/", "/data.json"):
            req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": f"127.0.0.1:{port}"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                chunks.append(resp.read().decode("utf-8", errors="replace"))
        return "\n".join(chunks)
    finally:
        srv.shutdown()
        srv.server_close()


# -- what an analyst sees ---------------------------------------------------------------------------

def hierarchies(run_dir: Path) -> list[str]:
    from convoscope.store import RunStore

    return RunStore(run_dir).facets()


def report_json(run_dir: Path, facet: str | None = None) -> dict[str, Any]:
    args = ["report", str(run_dir), "--json"] + (["--facet", facet] if facet else [])
    result = invoke(args)
    assert result.exit_code == 0, str(result)
    return json.loads(result.output[result.output.index("{"):])


def json_of(output: str) -> Any:
    return json.loads(output[output.index("{"):])


def _split_date(run_dir: Path) -> str:
    from convoscope.store import RunStore

    agg = RunStore(run_dir).read_json("aggregates")
    lo, hi = agg["run"]["time_range"]
    a, b = datetime.fromisoformat(lo), datetime.fromisoformat(hi)
    return (a + (b - a) / 2).date().isoformat()


def analyst_outputs(run_dir: Path, extra_runs: Iterable[Path] = (), split_at: Sequence[str] = ()) -> str:
    """Everything an analyst can see of the run, for every hierarchy it has: report (text with every
    level, and --json), the explorer HTML, serve's `/` and `/data.json`, every `analyze` command in text
    and --json at every level, `compare --split-at` and `compare RUN OTHER`. A command that refuses
    cleanly (e.g. `concerning` in extractive mode) is fine; a traceback is a failure."""
    run_dir = Path(run_dir)
    chunks: list[str] = []

    def cmd(*args: Any) -> str:
        result = invoke(list(args))
        assert "Traceback" not in result.output, f"{args}: {result}"
        chunks.append(f"\n=== {' '.join(map(str, args))}\n{result.output}")
        return result.output

    splits = list(split_at) or [_split_date(run_dir)]
    for facet in hierarchies(run_dir):
        fa = ["--facet", facet]
        levels = report_json(run_dir, facet)["levels"]
        cmd("report", run_dir, "--depth", str(levels + 2), *fa)
        cmd("report", run_dir, "--json", *fa)
        html = Path(run_dir) / f"explorer-{facet}.html"
        cmd("explore", run_dir, "--output", html, *fa)
        chunks.append(html.read_text(encoding="utf-8"))
        from convoscope.store import RunStore

        chunks.append(serve_responses(RunStore(run_dir).for_facet(facet).root))
        cmd("analyze", "usage", run_dir, "--levels", str(levels), *fa)
        cmd("analyze", "usage", run_dir, "--levels", str(levels), "--json", *fa)
        for level in range(levels):
            lv = ["--level", str(level)]
            for j in ([], ["--json"]):
                cmd("analyze", "languages", run_dir, *lv, "--min-support", "1", "--min-language", "1", *j, *fa)
                cmd("analyze", "concerning", run_dir, *lv, "--top", "1000", *j, *fa)
                cmd("analyze", "classifier", run_dir, "--flag-field", FLAG_FIELD, *lv, "--min-conversations", "1", "--top", "1000", *j, *fa)
                for split in splits:
                    cmd("compare", run_dir, "--split-at", split, *lv, "--top", "1000", *j, *fa)
                for other in extra_runs:
                    cmd("compare", run_dir, other, *lv, "--top", "1000", *j, *fa)
        for j in ([], ["--json"]):
            cmd("analyze", "coordination", run_dir, "--top", "1000", "--min-burst", "2", "--burst-z", "1",
                "--min-template-accounts", "1", *j, *fa)
    every = run_dir / "explorer-all.html"  # `explore RUN`: one page with every hierarchy (a switcher)
    cmd("explore", run_dir, "--output", every)
    chunks.append(every.read_text(encoding="utf-8"))
    return "\n".join(chunks)


# -- internal tables (for invariants) ----------------------------------------------------------------

def internal(run_dir: Path, facet: str | None = None) -> dict[str, Any]:
    """The run's internal tables as Python lists (accounts are salted hashes there)."""
    from convoscope.store import RunStore

    store = RunStore(run_dir).for_facet(facet)
    root = RunStore(run_dir)
    return {"clusters": store.read_table("clusters").to_pylist(), "assignments": store.read_table("assignments").to_pylist(),
            "conversations": root.read_table("conversations").to_pylist(), "facets": root.read_table("facets").to_pylist()}


def published(report: dict[str, Any], level: int | None = None) -> list[dict[str, Any]]:
    return [c for c in report["clusters"] if c["kind"] == "cluster" and (level is None or c["level"] == level)]


def found(text: str, needles: Iterable[str]) -> list[str]:
    low = text.lower()
    return [n for n in needles if n.lower() in low]


def words(text: str) -> list[str]:
    return re.findall(r"[\w'-]+", text)


# -- the planted attacks ------------------------------------------------------------------------------

_SUFFIXES = ["", " please", " thanks", " any advice?", " as soon as possible", " in detail", " briefly", " step by step"]
_AGAIN = ["", " again", " once more", " one more time"]


def vary(text: str, i: int) -> str:
    """Distinct texts (exact duplicates are removed at ingest) that stay on topic."""
    return f"{text}{_SUFFIXES[i % len(_SUFFIXES)]}{_AGAIN[(i // len(_SUFFIXES)) % len(_AGAIN)]}"


def at(day: str, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, minute=minute, second=second, tzinfo=timezone.utc)


INSULIN = [
    "I need to adjust my insulin schedule because my evening glucose readings keep spiking",
    "how should I change my insulin schedule when I exercise in the morning",
    "is it safe to move my long acting insulin dose from night to morning on my insulin schedule",
    "what should my insulin schedule look like on days I skip lunch",
    "my insulin schedule makes me hypo at 3am what should I change",
]
DOMINANT_NAME = "Bartholomew Fennimore-Pike"
DOMINANT = ["Fennimore", "Bartholomew", "Fennimore-Pike"]
LANDLORD = ["Zebulon", "Quargmire", "Wobbleton"]
CRABTREE = ["Crabtree", "Wilhelmina"]
THEREMIN = ["Glockenspiel", "Theremin", "Sprockett"]
CONTACT = ["cornelius.vandersnoot@example.net", "vandersnoot", "07700 900123", "07700900123", "900123", "17 Quibbleford Crescent",
           "Quibbleford", "+44 20 7946 0018", "7946 0018"]
GHOST_DAY = "2026-02-14"     # attack 4d: one account's 6 conversations on a quiet day
LONE_DAY = "2026-04-15"      # attack 5: one account's 6 conversations on a day nobody else used (mid-week, mid-month: never a week or month bucket start)
SPLIT_DAY = "2026-03-10"     # attack 4c: 3 conversations at 12:00:00
DIAMOND_WEEK = "2026-03-23"  # attack 4a: a withheld cluster's distinctive week


def attack1_dominant() -> list[dict[str, Any]]:
    """One account, 25 conversations naming himself and his insulin schedule, plus 4 cover accounts."""
    out = []
    for i, when in enumerate(spread_times(25, seed=101)):
        text = (f"My name is {DOMINANT_NAME} and I take 14 units of Lantus every night. {INSULIN[i % len(INSULIN)]}? "
                f"Mr {DOMINANT_NAME.split()[1]} here again, question {i + 1}.")
        out.append(record(f"a1-main-{i}", text, "plant-a1-main", when, age=57))
    for j, when in enumerate(spread_times(4, seed=102)):
        out.append(record(f"a1-cover-{j}", INSULIN[j] + "?", f"plant-a1-cover-{j}", when))
    return out


def attack2_no_account() -> list[dict[str, Any]]:
    """20 records without an account id, all about one person hiding assets from a bankruptcy trustee."""
    texts = ["how can Thaddeus Ockelbridge hide his boat from the bankruptcy trustee",
             "can Thaddeus Ockelbridge move money to his sister before the bankruptcy trustee finds it",
             "what assets can Thaddeus Ockelbridge keep hidden from the bankruptcy trustee",
             "will the bankruptcy trustee find the cash Thaddeus Ockelbridge keeps in a safe deposit box"]
    return [record(f"a2-{i}", f"{texts[i % 4]} (asking for the {i + 1}th time)", None, when)
            for i, when in enumerate(spread_times(20, seed=201))]


def attack3_campaign() -> list[dict[str, Any]]:
    """7 accounts x 4 conversations naming a private person and his street."""
    texts = ["my landlord Zebulon Quargmire at 42 Wobbleton Lane refuses to return my security deposit, what can I do",
             "my landlord Zebulon Quargmire at 42 Wobbleton Lane will not fix the heating, how do I complain",
             "my landlord Zebulon Quargmire at 42 Wobbleton Lane entered my flat without notice, is that legal",
             "my landlord Zebulon Quargmire at 42 Wobbleton Lane raised my rent twice this year, can he do that"]
    times = spread_times(28, seed=301)
    return [record(f"a3-{a}-{k}", vary(texts[k], a), f"plant-a3-{a}", times[a * 4 + k]) for a in range(7) for k in range(4)]


def attack4a_diamond() -> list[dict[str, Any]]:
    """A cluster of 2 accounts (withheld) with a distinctive signature: plan diamond, age 88, one week,
    on a topic next to a published one (car tyres), so its parent is published."""
    texts = ["what tire pressure should my vintage camper van use when towing a boat",
             "check the tire pressure on my vintage camper van before towing",
             "my vintage camper van tire pressure warning came on while towing"]
    out = []
    for i in range(8):
        when = at(DIAMOND_WEEK, 9 + i) + timedelta(days=i % 5)
        out.append(record(f"a4a-{i}", vary(texts[i % 3], i), f"plant-a4a-{i % 2}", when, plan="diamond", age=88))
    return out


def attack4b_burst() -> list[dict[str, Any]]:
    """15 conversations from 2 accounts on one day: a withheld cluster with a burst."""
    texts = ["how do I calibrate my Sprockett Theremin for the Glockenspiel Festival recital",
             "tune the Sprockett Theremin pitch antenna for the Glockenspiel Festival",
             "Sprockett Theremin volume antenna hums before the Glockenspiel Festival"]
    return [record(f"a4b-{i}", vary(texts[i % 3], i), f"plant-a4b-{i % 2}", at("2026-02-20", 8 + i % 10, i)) for i in range(15)]


def attack4c_split() -> list[dict[str, Any]]:
    """3 conversations between 11:59:59 and 12:00:01 on SPLIT_DAY (one second apart from the split)."""
    texts = ["what is the weather going to be like in Lisbon tomorrow", "play some jazz music for dinner", "transfer 50 dollars to my savings"]
    return [record(f"a4c-{i}", texts[i], f"plant-a4c-{i}", at(SPLIT_DAY, 12, 0, 0)) for i in range(3)]


def attack4d_ghost() -> list[dict[str, Any]]:
    """One account's 6 conversations on a quiet day (the only difference between two runs)."""
    texts = ["what is the weather forecast for this weekend", "will it rain tomorrow morning", "how cold will it be tonight",
             "what is the weather like today", "is it going to snow this week", "how windy is it outside right now"]
    return [record(f"a4d-{i}", texts[i], "plant-a4d-ghost", at(GHOST_DAY, 9 + i)) for i in range(6)]


def attack5_numeric() -> list[dict[str, Any]]:
    """An age outlier (131), and one account's 6 conversations on a day nobody else used."""
    texts = ["play my favourite rock playlist", "play some relaxing piano music", "play the latest pop hits",
             "play music by the beatles", "put on some music for studying", "play a song i can dance to"]
    out = [record("a5-old", "what will the weather be like this afternoon", "plant-a5-old", at("2026-03-02", 15), age=131)]
    out += [record(f"a5-lone-{i}", texts[i], "plant-a5-lone", at(LONE_DAY, 10 + i)) for i in range(6)]
    return out


def attack6_crabtree() -> list[dict[str, Any]]:
    """A small distinctive group (2 accounts) the copying summariser names: withheld by the size gates."""
    texts = ["help me prepare a statement for Wilhelmina Crabtree's parole hearing next month",
             "what should I say at Wilhelmina Crabtree's parole hearing",
             "can I speak at Wilhelmina Crabtree's parole hearing as her neighbour"]
    times = spread_times(10, seed=601)
    return [record(f"a6-{i}", vary(texts[i % 3], i), f"plant-a6-{i % 2}", times[i]) for i in range(10)]


def attack_contact() -> list[dict[str, Any]]:
    """Planted e-mail, phones (a UK mobile written with a space, a London landline) and a street, used
    by 8 accounts so that no account threshold stands between them and the analyst."""
    texts = ["please update my delivery details: email cornelius.vandersnoot@example.net, mobile 07700 900123, address 17 Quibbleford Crescent",
             "change the contact number on my order to 07700 900123 and send the receipt to cornelius.vandersnoot@example.net",
             "my new address is 17 Quibbleford Crescent, call me on +44 20 7946 0018 if the courier is lost"]
    times = spread_times(24, seed=701)
    return [record(f"ac-{a}-{k}", vary(texts[k], a), f"plant-ac-{a}", times[a * 3 + k]) for a in range(8) for k in range(3)]


ALL_NEEDLES = DOMINANT + LANDLORD + CRABTREE + THEREMIN + CONTACT


def attack_dataset(ghost: bool = True) -> list[dict[str, Any]]:
    """Background plus every attack that fits one run (not 2: missing accounts need a flag)."""
    bg = [r for r in background() if not r["created_at"].startswith((GHOST_DAY, LONE_DAY))]
    quiet = [r for r in background(seed=99) if r["text"].startswith("what")][:2]  # 2 other accounts on the ghost day
    for i, r in enumerate(quiet):
        r.update(id=f"quiet-{i}", created_at=at(GHOST_DAY, 14 + i).isoformat())
    plants = (attack1_dominant() + attack3_campaign() + attack4a_diamond() + attack4b_burst() + attack4c_split()
              + attack5_numeric() + attack6_crabtree() + attack_contact())
    return bg + quiet + plants + (attack4d_ghost() if ghost else [])


# -- shared runs (expensive: made once per test session) ------------------------------------------------

_RUNS: dict[str, Any] = {}
_TMP: list[Path] = []


def _tmpdir(name: str) -> Path:
    import atexit
    import shutil
    import tempfile

    if not _TMP:
        _TMP.append(Path(tempfile.mkdtemp(prefix="convoscope-attacks-")))
        atexit.register(shutil.rmtree, _TMP[0], True)
    path = _TMP[0] / name
    path.mkdir(parents=True, exist_ok=True)
    return path


class SharedRun:
    def __init__(self, run_dir: Path, records: list[dict[str, Any]], requests: list[dict[str, Any]] | None = None):
        self.run_dir = run_dir
        self.records = records
        self.requests = requests or []
        self._outputs: str | None = None
        self.extra_runs: list[Path] = []

    def outputs(self) -> str:
        if self._outputs is None:
            self._outputs = analyst_outputs(self.run_dir, self.extra_runs, split_at=[SPLIT_DAY])
        return self._outputs


def shared_run(mode: str, name: str = "attacks", records_fn=None, parent_marker: bool = False, extra_args: Sequence[str] = ()) -> SharedRun:
    """The attack dataset run once per session per (mode, name): mode 'extractive' or 'llm'."""
    key = f"{mode}-{name}"
    if key in _RUNS:
        return _RUNS[key]
    records = (records_fn or attack_dataset)()
    directory = _tmpdir(key)
    path = write_records(directory / "input.jsonl", records)
    run_dir = directory / "run"
    requests: list[dict[str, Any]] = []
    if mode == "llm":
        from fakes.llm_servers import FakeOpenAIServer

        from privacy.adversarial_llm import make_adversarial_responder

        with FakeOpenAIServer(responder=make_adversarial_responder(parent_marker=parent_marker)) as server:
            run_pipeline_cli(path, run_dir, llm_url=server.url, extra_args=extra_args)
            requests = list(server.requests)
    else:
        run_pipeline_cli(path, run_dir, extra_args=extra_args)
    _RUNS[key] = SharedRun(run_dir, records, requests)
    return _RUNS[key]


def members(run_dir: Path, facet: str | None = None) -> dict[str, list[tuple[str, str]]]:
    """Internal: cluster id (any level) -> [(conversation id, hashed account)]."""
    tables = internal(run_dir, facet)
    account = {c["conv_id"]: c["account"] for c in tables["conversations"]}
    out: dict[str, list[tuple[str, str]]] = {}
    for row in tables["assignments"]:
        for key, cid in row.items():
            if key.startswith("level_") and cid is not None:
                out.setdefault(cid, []).append((row["conv_id"], account[row["conv_id"]]))
    return out


def timeline_dict(timeline: Any) -> dict[str, int]:
    if not timeline:
        return {}
    if isinstance(timeline, dict):
        return {str(k): int(v) for k, v in timeline.items()}
    return {str(k): int(v) for k, v in timeline}
