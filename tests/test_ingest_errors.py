"""Malformed input: located InputErrors, or skipped and counted with skip_invalid; nothing dropped silently."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from test_ingest_helpers import read, write_json, write_jsonl

from convoscope.errors import InputError
from convoscope.ingest import IngestOptions

CLINC = Path(__file__).resolve().parent / "data" / "clinc150_slice.jsonl.gz"  # the repository's slice (tests/data/README.md)
OK = [{"role": "user", "content": "x"}]


@pytest.fixture
def clinc50_broken(tmp_path):
    with gzip.open(CLINC, "rt", encoding="utf-8") as f:
        lines = [next(f) for _ in range(50)]
    lines[16] = lines[16][:25] + "\n"  # line 17: truncated JSON
    path = tmp_path / "clinc150.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_broken_line_is_located(clinc50_broken):
    with pytest.raises(InputError, match=r"clinc150\.jsonl:17: bad JSON") as exc:
        read(clinc50_broken)
    assert exc.value.line == 17


def test_skip_invalid_counts(clinc50_broken):
    convs, report = read(clinc50_broken, skip_invalid=True)
    assert len(convs) == 49 and report.conversations == 49 and report.invalid == 1
    assert report.invalid_examples[0].startswith(f"{clinc50_broken}:17: bad JSON")


SHAREGPT_OK = {"conversations": [{"from": "human", "value": "ok"}]}


# The first record is valid, so detection sees the intended format and the bad one is line 2.
@pytest.mark.parametrize("first, record, field, reason", [
    ({"messages": OK}, {"messages": "hello"}, "messages", "expected a list"),
    ({"messages": OK}, {"messages": []}, "messages", "no messages"),
    ({"messages": OK}, {"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", "unknown role"),
    ({"messages": OK}, {"messages": [{"role": "user", "content": []}]}, "messages[0].content", "empty content list"),
    ({"messages": OK}, {"messages": [{"role": "user"}]}, "messages[0].content", "missing"),
    ({"messages": OK}, {"messages": OK, "created_at": "yesterday"}, "created_at", "bad timestamp"),
    ({"messages": OK}, {"messages": OK, "id": {"nested": 1}}, "id", "expected a string or integer id"),
    (SHAREGPT_OK, {"conversations": [{"from": "alien", "value": "x"}]}, "conversations[0].from", "unknown speaker"),
    ({"text": "ok"}, {"text": "   "}, "text", "empty text"),
])
def test_bad_record_reports_field(tmp_path, first, record, field, reason):
    path = write_jsonl(tmp_path / "bad.jsonl", [first, record])
    with pytest.raises(InputError) as exc:
        read(path)
    assert f"bad.jsonl:2: field '{field}': " in str(exc.value) and reason in str(exc.value)
    convs, report = read(path, skip_invalid=True)
    assert len(convs) == 1 and report.invalid == 1


def test_first_five_reasons_kept(tmp_path):
    path = write_jsonl(tmp_path / "many.jsonl", [{"messages": OK}] + [{"messages": []}] * 7)
    convs, report = read(path, skip_invalid=True)
    assert report.invalid == 7 and len(report.invalid_examples) == 5 and len(convs) == 1


def test_json_array_item_is_located(tmp_path):
    path = write_json(tmp_path / "conversations.json", [{"conversations": [{"from": "human", "value": "a"}]},
                                                        {"conversations": [{"from": "gpt"}]}])
    with pytest.raises(InputError, match=r"conversations\.json: record 2: field 'conversations\[0\]\.value': missing") as exc:
        read(path)
    assert exc.value.line == 2 and exc.value.unit == "record"
    assert "--skip-invalid" in str(exc.value)
    convs, report = read(path, skip_invalid=True)
    assert len(convs) == 1 and report.invalid_examples[0].endswith("conversations.json: record 2: field 'conversations[0].value': missing")


def test_truncated_json_array(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text('[{"conversations": [{"from": "human", "value": "a"}]}, {"conversa', encoding="utf-8")
    with pytest.raises(InputError, match=r"cut\.json: record 2: bad JSON"):
        read(path, skip_invalid=True)  # cannot resynchronise: even skip_invalid stops, loudly


def test_empty_inputs(tmp_path):
    for name, data in [("empty.jsonl", b""), ("blank.jsonl", b"\n  \n"), ("empty.csv", b"")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match="empty"):
            read(tmp_path / name)
    for name, data in [("empty_array.json", b"[]"), ("header_only.csv", b"text\n")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match="no records"):
            read(tmp_path / name)
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match="cannot read Parquet file"):
        read(tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="no such file"):
        read(tmp_path / "missing.jsonl")
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match="no supported files"):
        read(tmp_path / "d")
    (tmp_path / "d" / "x.jsonl").write_bytes(b"")
    with pytest.raises(InputError, match=r"no readable file \(.*x\.jsonl: file is empty\)"):
        read(tmp_path / "d")


def test_latin1_rejected(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"text": "café"}\n'.encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1\.jsonl:1: not UTF-8"):
        read(path, skip_invalid=True)
    csv_path = tmp_path / "latin1.csv"
    csv_path.write_bytes("text\ncafé\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read(csv_path)
    arr = tmp_path / "latin1.json"
    arr.write_bytes('[{"text": "café"}]'.encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read(arr)
    utf16 = tmp_path / "u16.jsonl"
    utf16.write_bytes('{"text": "x"}\n'.encode("utf-16"))
    with pytest.raises(InputError, match="UTF-16"):
        read(utf16)


def test_unknown_format(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"question": "x", "answer": "y"}])
    with pytest.raises(InputError, match=r"odd\.jsonl:1: unknown format: first record has fields \(question, answer\)"):
        read(path)
    (tmp_path / "nonjson.jsonl").write_text("hello world\n")
    with pytest.raises(InputError, match="bad JSON"):
        read(tmp_path / "nonjson.jsonl")
    (tmp_path / "odd.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="unknown table layout"):
        read(tmp_path / "odd.csv")


def test_duplicate_ids_are_invalid(tmp_path):
    path = write_jsonl(tmp_path / "ids.jsonl", [{"id": "1", "text": "a"}, {"id": "1", "text": "b"}])
    with pytest.raises(InputError, match=r"ids\.jsonl:2: field 'id': duplicate conversation id '1'"):
        read(path)


def test_csv_errors_point_at_rows(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("conversation_id,role,content\na,user,x\nb,robot,y\na,user,z\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"m\.csv:3: field 'role': unknown role 'robot'"):
        read(path)
    convs, report = read(path, skip_invalid=True)
    assert len(convs) == 1 and report.invalid == 2
    assert "m.csv:4: field 'conversation_id': rows of conversation 'a' are not contiguous" in report.invalid_examples[1]
    with pytest.raises(InputError, match="missing column"):
        read(tmp_path / "m.csv", table_layout="message", role_column="speaker")


def test_csv_unclosed_quote_is_named_at_its_row(tmp_path):
    """An unclosed quote used to swallow the rest of the file into one cell and be reported as a row
    without an account id; a stray quote after a closed cell was dropped silently."""
    path = tmp_path / "q.csv"
    path.write_text('text,user\n"hello, there",bob\n"unterminated,bob\nlater row,carol\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"q\.csv:3: bad CSV: a quoted cell is never closed"):
        read(path)
    (tmp_path / "s.csv").write_text('text,user\n"a"b,bob\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"s\.csv:2: bad CSV"):
        read(tmp_path / "s.csv")


def test_unknown_format_names_a_format_field_of_the_wrong_type(tmp_path):
    """{"text": 12345} was only "unknown format: first record has fields (text)"."""
    for name, record, said in [("n.jsonl", {"text": 12345}, "field 'text' is a number, not a string"),
                               ("m.jsonl", {"messages": "hello"}, "field 'messages' is a string, not an array")]:
        path = write_jsonl(tmp_path / name, [record])
        with pytest.raises(InputError, match="unknown format") as exc:
            read(path)
        assert said in str(exc.value)
    path = write_jsonl(tmp_path / "o.jsonl", [{"body": "hello"}])
    with pytest.raises(InputError, match="unknown format") as exc:
        read(path)
    assert "but field" not in str(exc.value)


def test_a_named_field_no_conversation_has_is_an_error(tmp_path):
    """`--account-field usr` (a typo) ran as input without account ids: the thresholds counted conversations."""
    from convoscope.ingest import MemorySource

    records = [{"id": f"c{i}", "user": f"u{i % 3}", "text": f"hello {i}", "created_at": "2026-01-01T00:00:00Z"} for i in range(6)]
    path = write_jsonl(tmp_path / "a.jsonl", records)
    with pytest.raises(InputError, match=r"a\.jsonl: no conversation has an account id in field 'usr' \(--account-field"):
        read(path, account_field="usr")
    with pytest.raises(InputError, match=r"no conversation has a time in field 'when' \(--time-field"):
        read(path, time_field="when")
    with pytest.raises(InputError, match="field 'usr'"):
        list(MemorySource.from_data(records).read(IngestOptions(account_field="usr")))
    convs, report = read(path, account_field="user", time_field="created_at")  # named and present: fine
    assert len(convs) == 6 and report.account_ids == "present"
    no_ids = write_jsonl(tmp_path / "b.jsonl", [{"text": f"hello {i}"} for i in range(3)])
    assert read(no_ids)[1].account_ids == "absent"  # none named, none present: runs, as documented


def test_scalar_metadata_field_is_kept(tmp_path):
    """`"metadata": "web"` (not an object) was dropped without a word; it is kept as the field `metadata`."""
    path = write_jsonl(tmp_path / "m.jsonl", [{"text": "hello", "metadata": "web", "plan": "pro"},
                                              {"text": "again", "metadata": {"plan": "free"}}])
    convs, _ = read(path)
    assert convs[0].metadata == {"metadata": "web", "plan": "pro"} and convs[1].metadata == {"plan": "free"}


def test_chatgpt_bad_current_node(tmp_path):
    path = write_json(tmp_path / "conversations.json", [{"id": "x", "mapping": {}, "current_node": "nope"}])
    with pytest.raises(InputError, match=r"conversations\.json: record 1: field 'current_node'"):
        read(path)
