"""Attack 8 (and the `serve` part of 9) of issue 11: data-derived text must never act on our outputs.

Cluster names are model output written from user text, so they can hold anything: the explorer
template's placeholders, `</script>`, rich markup (`[/]` used to crash `report` and `analyze usage`),
terminal escape sequences (colours, hyperlinks, window titles, clipboard writes). Every analyst-facing
output must show them as inert text. `serve` must refuse requests not addressed to localhost (DNS
rebinding). And a run whose input had no account ids says so in the report and the explorer.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

import convoscope.cli as cli
from convoscope.explorer.bundle import build_explorer_html, build_payload, build_served_html
from convoscope.explorer.server import allowed_host_names, host_allowed, make_server
from convoscope.report import NO_ACCOUNT_IDS, report_json
from convoscope.store import RunStore
from convoscope.text import clean_text, markup_safe
from fakes.run_fixture import make_run

# -- hostile names ---------------------------------------------------------------------------------
# Short enough that no table column shortens them (label() cuts at 48-60 characters).
PLACEHOLDER_NAMES = [
    "/*__JS__*/ __TITLE__ js",
    "<!--__DATA__--> /*__CSS__*/ data",
    "</script><script>window.__pwned=1</script>",
    "<!-- ${alert(1)} `${x}` <script>",
]
MARKUP_NAMES = [
    "[/] Close tag first",
    "[bold]Loud[/bold] markup",
    "[link=https://evil.example]Link[/link] text",
    "Unclosed [red bracket",
    "Trailing backslash \\",
]
# name -> what must be shown instead (the escape sequences removed whole, not just their ESC byte)
ANSI_NAMES = {
    "Red \x1b[31mtext\x1b[0m here": "Red text here",
    "Hyper\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\ here": "Hyperlink here",
    "Title\x1b]0;pwned\x07 set": "Title set",
    "Clip\x1b]52;c;ZXZpbA==\x07board": "Clipboard",
    "C1 \x9b2J clear \x9d0;t\x9c done": "C1 clear done",
    "Bidi \u202eevil\u202c name": "Bidi evil name",
}
HOSTILE_NAMES = PLACEHOLDER_NAMES + MARKUP_NAMES + list(ANSI_NAMES)
LITERAL_MARKUP = ["[/] Close tag first", "[bold]Loud[/bold] markup", "[link=https://evil.example]Link[/link] text",
                  "Unclosed [red bracket"]
TERMINAL_CONTROLS = ("\x1b", "\x9b", "\x9d", "\x07", "\u202e", "\u202c")


def _rename_clusters(run_dir: Path, **run_keys) -> dict[str, str]:
    """Give every published cluster a hostile name (and description); returns id -> name."""
    store = RunStore(run_dir)
    agg = store.read_json("aggregates")
    names = {}
    published = [c for c in agg["clusters"] if c["kind"] == "cluster"]
    for i, c in enumerate(published):
        c["name"] = HOSTILE_NAMES[i % len(HOSTILE_NAMES)]
        c["description"] = HOSTILE_NAMES[(i + 3) % len(HOSTILE_NAMES)] + " described"
        names[c["id"]] = c["name"]
    agg["run"].update(run_keys)
    agg["run"].setdefault("time_unit", "week")  # the fixture's timelines are weekly; `compare --split-at` needs the unit
    store.write_json("aggregates", agg)
    return names


def _fake_embeddings(run_dir: Path) -> None:
    """`analyze coordination` reads the facet embeddings, which the fixture run does not write."""
    store = RunStore(run_dir)
    n = store.read_table("facets").num_rows
    vecs = np.random.default_rng(0).normal(size=(n, 8)).astype(np.float32)
    store.write_array("embeddings", vecs / np.linalg.norm(vecs, axis=1, keepdims=True))


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> Path:
    run = make_run(tmp_path_factory.mktemp("hostile"), n_points=600, levels=2, seed=1)
    _rename_clusters(run)
    _fake_embeddings(run)
    return run


@pytest.fixture
def wide(monkeypatch):
    """Wide, colourless consoles, so table cells are not wrapped and output can be searched."""
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setattr(cli, "out", Console(width=400))


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(cli.app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"{args} raised {result.exception!r}\n{result.output}"
    assert result.exit_code == 0, f"{args}: exit {result.exit_code}\n{result.output}"
    return result.output


def _assert_inert(text: str) -> None:
    """No terminal control survives, and markup in names is shown as typed."""
    for ch in TERMINAL_CONTROLS:
        assert ch not in text, f"{ch!r} reached the output"
    assert "evil.example\x1b" not in text


# -- clean_text / markup_safe ------------------------------------------------------------------------

@pytest.mark.parametrize("raw,shown", list(ANSI_NAMES.items()))
def test_clean_text_removes_whole_escape_sequences(raw: str, shown: str) -> None:
    assert clean_text(raw) == shown


def test_clean_text_controls_whitespace_and_invisibles() -> None:
    assert clean_text("a\tb\nc\r\nd\x00e\x7ff\x85g") == "a b c def g"
    assert clean_text("  many   spaces\u2028here  ") == "many spaces here"
    assert clean_text("zero\u200bwidth\ufeff\u2060") == "zerowidth"
    assert clean_text("unterminated \x1b]8;;https://evil.example") == "unterminated"
    assert clean_text("lone escape\x1b") == "lone escape"
    assert clean_text("tag\U000e0041\U000e0042 chars") == "tag chars"  # "ASCII smuggling"
    # joiners that scripts need inside words are kept; at edges or in runs they are removed
    assert clean_text("می\u200cخواهم") == "می\u200cخواهم"
    assert clean_text("\u200dedge\u200d x\u200d\u200dy") == "edge xy"
    assert clean_text("") == "" and clean_text(None) == ""  # type: ignore[arg-type]


@pytest.mark.parametrize("name", MARKUP_NAMES + list(ANSI_NAMES))
def test_markup_safe_prints_literally(name: str) -> None:
    console = Console(width=200, record=True, color_system=None, force_terminal=True)
    console.print(f"[bold]{markup_safe(name)}[/] after")
    assert console.export_text().rstrip("\n") == f"{clean_text(name)} after"


# -- report -----------------------------------------------------------------------------------------

def test_report_text_shows_hostile_names_as_text(hostile_run: Path, wide) -> None:
    text = _invoke(["report", str(hostile_run), "--depth", "3"])
    _assert_inert(text)
    for name in LITERAL_MARKUP + PLACEHOLDER_NAMES:
        assert name in text, name
    for shown in ANSI_NAMES.values():
        assert shown in text, shown


def test_report_json_carries_names_as_json_strings(hostile_run: Path) -> None:
    text = _invoke(["report", str(hostile_run), "--json"])
    assert "\x1b" not in text  # JSON escapes control characters (\u001b)
    data = json.loads(text)
    names = {c["name"] for c in data["clusters"]}
    assert set(MARKUP_NAMES + PLACEHOLDER_NAMES) <= names


# -- analyses and compare ---------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["analyze", "usage"],
    ["analyze", "languages", "--min-support", "1", "--min-language", "1", "--top", "50"],
    ["analyze", "concerning", "--top", "100"],
    ["analyze", "coordination", "--rate-ratio", "0", "--top", "100"],
    ["analyze", "classifier", "--flag-field", "flagged", "--min-conversations", "1", "--top", "100"],
    ["compare", "--split-at", "2024-02-01", "--top", "100"],
], ids=lambda a: "-".join(a[:2]))
def test_analysis_tables_show_hostile_names_as_text(hostile_run: Path, wide, args: list[str]) -> None:
    cmd = args[:2] + [str(hostile_run)] + args[2:] if args[0] == "analyze" else args[:1] + [str(hostile_run)] + args[1:]
    text = _invoke(cmd)
    _assert_inert(text)
    shown = [n for n in LITERAL_MARKUP + list(ANSI_NAMES.values()) if n in text]
    if args[1] in ("usage", "concerning", "classifier"):  # these list every published cluster
        assert set(shown) == set(LITERAL_MARKUP) | set(ANSI_NAMES.values()), text
    # markup was not interpreted: where a name's words show, its brackets show too
    for name, words in (("[bold]Loud[/bold] markup", "Loud"), ("[link=https://evil.example]Link[/link] text", "Link[/link]")):
        if words in text:
            assert name in text


def test_analysis_json_outputs_are_json(hostile_run: Path) -> None:
    for args in (["analyze", "usage", str(hostile_run), "--json"], ["compare", str(hostile_run), "--split-at", "2024-02-01", "--json"]):
        text = _invoke(args)
        assert "\x1b" not in text
        json.loads(text)


def test_compare_runs_matched_name_is_text(hostile_run: Path) -> None:
    """The "≈ before-name" cell of a two-run comparison (matched by embedding) is escaped too."""
    from convoscope.analyses.common import load_run
    from convoscope.analyses.compare import compare_runs, print_compare

    run = load_run(hostile_run)
    result = compare_runs(run, run)
    hostile = ["[/] Close tag first", "Red \x1b[31mtext\x1b[0m here", "[bold]Loud[/bold] markup"]
    for r, name in zip(result["clusters"], hostile * len(result["clusters"])):
        r.update({"match": "embedding", "match_cosine": 0.91, "before_name": name, "status": "grew"})
    console = Console(width=400, record=True, color_system=None)
    print_compare(result, console, top=100)
    text = console.export_text()
    _assert_inert(text)
    assert "≈ [/] Close tag first (0.91)" in text and "≈ Red text here (0.91)" in text and "≈ [bold]Loud[/bold] markup" in text


def test_error_messages_are_printed_as_text(monkeypatch, capsys) -> None:
    """Errors quote input (paths, field values); `main` prints them without interpreting markup."""
    from convoscope.errors import ConvoscopeError

    def fail() -> None:
        raise ConvoscopeError("bad value '[/]' in field [bold]x[/bold] \x1b[31m")

    monkeypatch.setattr(cli, "app", fail)
    monkeypatch.setattr(cli, "err", Console(stderr=True, width=400, color_system=None))
    with pytest.raises(SystemExit):
        cli.main()
    text = capsys.readouterr().err
    assert "bad value '[/]' in field [bold]x[/bold]" in text and "\x1b" not in text


# -- explorer ---------------------------------------------------------------------------------------

def _script_body(html: str, element_id: str) -> str:
    start = html.index(f'id="{element_id}">') + len(f'id="{element_id}">')
    return html[start:html.index("</script>", start)]


def test_explorer_placeholders_in_names_and_title(tmp_path: Path) -> None:
    # the page title comes from the run directory's name: make that hostile too
    run = make_run(tmp_path / "run __TITLE__ <!--__DATA__--> <script>", n_points=300, levels=2, seed=3)
    names = _rename_clusters(run)
    html = build_explorer_html(run)

    data = _script_body(html, "explorer-data")
    assert "<" not in data  # "<" is \u003c inside the JSON: no </script>, no <!--, whatever the names hold
    assert "\\u003c/script>" in data and "\\u003c!--" in data
    payload = json.loads(data)
    shown = {c["id"]: c["name"] for c in payload["clusters"] if c["id"] in names}
    assert shown == {cid: clean_text(n) for cid, n in names.items()}  # placeholders stayed text
    assert any("${alert(1)}" in n for n in shown.values())
    descriptions = [c["description"] for c in payload["clusters"] if c["id"] in names]
    assert any("/*__JS__*/ __TITLE__" in d for d in descriptions)

    # the template was filled exactly once: one data element, one script, CSS and title in place
    assert html.count('id="explorer-data"') == 1
    assert html.count("</script>") == 2 and html.count("<script>") == 1
    assert html.count("<style>") == 1 and "/*__CSS__*/" not in html.split("<script")[0]
    title = html[html.index("<title>") + 7:html.index("</title>")]
    assert title == "convoscope explorer — run __TITLE__ &lt;!--__DATA__--&gt; &lt;script&gt;"
    assert "window.__pwned" not in html.split('id="explorer-data"')[0]  # nothing from the data outside its element

    served = build_served_html(run)
    assert served.count("</script>") == 2 and 'id="explorer-data-url"' in served
    assert "<title>convoscope explorer — run __TITLE__ &lt;!--__DATA__--&gt; &lt;script&gt;</title>" in served


def test_explorer_payload_has_no_terminal_controls(hostile_run: Path) -> None:
    payload = build_payload(hostile_run)
    text = json.dumps(payload, ensure_ascii=False)
    for ch in TERMINAL_CONTROLS:
        assert ch not in text
    assert set(ANSI_NAMES.values()) <= {c["name"] for c in payload["clusters"]}


# -- serve: Host header check (DNS rebinding) ---------------------------------------------------------

def _raw_get(port: int, path: str, host: str | None) -> tuple[int, bytes]:
    lines = [f"GET {path} HTTP/1.1"] + ([f"Host: {host}"] if host is not None else []) + ["Connection: close", "", ""]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall("\r\n".join(lines).encode("latin-1"))
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.fixture
def server(hostile_run: Path):
    started = []

    def start(**kwargs):
        srv = make_server(hostile_run, port=0, **kwargs)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        started.append(srv)
        return srv.server_address[1]

    yield start
    for srv in started:
        srv.shutdown()
        srv.server_close()


def test_serve_answers_localhost_names_only(server) -> None:
    port = server()
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost", "LOCALHOST:%d" % port):
        status, body = _raw_get(port, "/data.json", host)
        assert status == 200, host
        assert json.loads(body)["clusters"]
    forged = ["evil.example", f"evil.example:{port}", f"localhost.evil.example:{port}", f"127.0.0.1.evil.example:{port}",
              f"localhost:{port + 1 if port < 65535 else 1}", f"localhost@evil.example:{port}", "", "[::1]x", f"0.0.0.0:{port}"]
    for host in forged + [None]:
        for path in ("/data.json", "/"):
            status, body = _raw_get(port, path, host)
            assert status == 403, (host, path, status)
            assert b"clusters" not in body and b"Close tag" not in body and b"localhost" in body


def test_serve_explicit_host_and_allow_host(server) -> None:
    port = server(host="127.0.0.1", allow_hosts=["explorer.lan", "10.0.0.7"])
    assert _raw_get(port, "/data.json", f"explorer.lan:{port}")[0] == 200
    assert _raw_get(port, "/", "10.0.0.7")[0] == 200
    assert _raw_get(port, "/", f"other.lan:{port}")[0] == 403


def test_allowed_host_names() -> None:
    assert allowed_host_names("127.0.0.1") == {"localhost", "127.0.0.1", "[::1]"}
    assert "192.168.1.5" in allowed_host_names("192.168.1.5")
    assert "myhost.local" in allowed_host_names("MyHost.local")
    assert "0.0.0.0" not in allowed_host_names("0.0.0.0")  # a wildcard bind names no host
    assert "[fe80::1]" in allowed_host_names("::", ["fe80::1"])
    names = allowed_host_names("127.0.0.1")
    assert host_allowed("[::1]:80", names, 80) and not host_allowed("[::1]:81", names, 80)
    assert not host_allowed(None, names, 80) and not host_allowed("", names, 80)
    assert not host_allowed("[::1]evil", names, 80) and not host_allowed("localhost:80:80", names, 80)


def test_serve_command_passes_allow_host(monkeypatch, hostile_run: Path) -> None:
    seen = {}
    monkeypatch.setattr("convoscope.explorer.serve", lambda run_dir, **kw: seen.update(kw))
    _invoke(["serve", str(hostile_run), "--no-browser", "--host", "0.0.0.0", "--allow-host", "a.lan", "--allow-host", "b.lan"])
    assert seen["host"] == "0.0.0.0" and list(seen["allow_hosts"]) == ["a.lan", "b.lan"]


# -- "no account ids" warning ---------------------------------------------------------------------------

@pytest.fixture
def no_accounts_run(tmp_path: Path) -> Path:
    run = make_run(tmp_path, n_points=300, levels=2, seed=4)
    store = RunStore(run)
    agg = store.read_json("aggregates")
    agg["run"]["account_ids"] = "absent"
    store.write_json("aggregates", agg)
    return run


def test_report_warns_when_input_has_no_account_ids(no_accounts_run: Path, wide) -> None:
    text = _invoke(["report", str(no_accounts_run)])
    assert NO_ACCOUNT_IDS in text
    assert text.index(NO_ACCOUNT_IDS) < text.index("conversations")  # in the header, before the tree
    data = json.loads(_invoke(["report", str(no_accounts_run), "--json"]))
    assert data["warnings"] == [NO_ACCOUNT_IDS] and data["run"]["account_ids"] == "absent"


def test_explorer_banner_when_input_has_no_account_ids(no_accounts_run: Path) -> None:
    payload = build_payload(no_accounts_run)
    assert payload["warnings"] == [NO_ACCOUNT_IDS] and payload["run"]["account_ids"] == "absent"
    html = build_explorer_html(no_accounts_run)
    assert 'id="banner"' in html
    js = html[html.index("<script>"):]
    assert "renderBanner" in js and "innerHTML" not in js


@pytest.mark.parametrize("value", [None, "present", "<b>absent</b>"])
def test_no_warning_with_account_ids_or_old_runs(tmp_path: Path, value: str | None, wide) -> None:
    run = make_run(tmp_path, n_points=300, levels=2, seed=5)
    store = RunStore(run)
    agg = store.read_json("aggregates")
    agg["run"].pop("account_ids", None)
    if value is not None:
        agg["run"]["account_ids"] = value
    store.write_json("aggregates", agg)
    assert NO_ACCOUNT_IDS not in _invoke(["report", str(run)])
    assert report_json(store)["warnings"] == []
    payload = build_payload(run)
    assert payload["warnings"] == [] and payload["run"]["account_ids"] == "present"
