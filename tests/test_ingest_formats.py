"""Every format is read, detected from content, and overridable."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from convoscope.errors import InputError
from convoscope.ingest import FORMATS, IngestOptions

from test_ingest_helpers import chatgpt_conversation, read, write_json, write_jsonl

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def test_openai_jsonl(tmp_path):
    path = write_jsonl(tmp_path / "chats.jsonl", [
        {"id": "c1", "user": "u1", "created_at": "2024-05-01T12:00:00Z", "metadata": {"source": "web"}, "lang": "en",
         "messages": [
             {"role": "system", "content": "be nice"},
             {"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "image_url", "image_url": {}},
                                          {"type": "text", "text": "there"}]},
             {"role": "assistant", "content": None,
              "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "search", "arguments": "{}"}}]},
             {"role": "tool", "content": "result", "name": "search"},
         ]},
        {"id": "c2", "user": "u2", "timestamp": 1714564800, "messages": [{"role": "user", "content": "hi"}]},
    ])
    convs, report = read(path)
    c1, c2 = convs
    assert report.format == "openai" and report.conversations == 2 and report.messages == 5
    assert [m.role for m in c1.messages] == ["system", "user", "assistant", "tool"]
    assert c1.messages[1].content == "hello\nthere"
    assert c1.messages[2].tool_calls[0].name == "search" and c1.messages[2].content == ""
    assert c1.messages[3].name == "search"
    assert c1.account_id == "u1" and c1.created_at == T0
    assert c1.metadata == {"source": "web", "lang": "en"}
    assert c2.created_at == T0 and c2.id == "c2"
    assert report.accounts == 2 and not report.missing_account


def test_sharegpt_array_and_jsonl(tmp_path):
    rec = {"id": "s1", "conversations": [
        {"from": "system", "value": "sys"}, {"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    for path in (write_json(tmp_path / "a.json", [rec]), write_jsonl(tmp_path / "b.jsonl", [rec])):
        convs, report = read(path)
        assert report.format == "sharegpt"
        assert [(m.role, m.content) for m in convs[0].messages] == [("system", "sys"), ("user", "q"), ("assistant", "a")]


def test_hh_transcripts(tmp_path):
    path = write_jsonl(tmp_path / "hh.jsonl.gz", [
        {"chosen": "\n\nHuman: how?\n\nAssistant: like this.\n\nHuman: thanks\n\nAssistant: welcome",
         "rejected": "\n\nHuman: how?\n\nAssistant: no."},
        {"text": "\n\nHuman: only a question\n\nAssistant:"},
    ], gz=True)
    convs, report = read(path)
    assert report.format == "hh"
    assert [(m.role, m.content) for m in convs[0].messages] == [
        ("user", "how?"), ("assistant", "like this."), ("user", "thanks"), ("assistant", "welcome")]
    assert convs[0].metadata == {}  # the rejected transcript is not metadata
    assert convs[0].id == "hh.jsonl.gz:1" and convs[1].id == "hh.jsonl.gz:2"
    assert [m.role for m in convs[1].messages] == ["user", "assistant"]


def test_claude_export(tmp_path):
    path = write_json(tmp_path / "conversations.json", [
        {"uuid": "cl-1", "name": "Trip", "created_at": "2024-05-01T14:00:00+02:00", "account": {"uuid": "acc-1"},
         "chat_messages": [
             {"sender": "human", "text": "plan a trip", "content": [{"type": "text", "text": "plan a trip"}]},
             {"sender": "assistant", "text": "old", "content": [
                 {"type": "text", "text": "sure"}, {"type": "tool_use", "name": "x"}, {"type": "text", "text": "done"}]},
         ]},
        {"uuid": "cl-2", "name": "", "created_at": "2024-05-02T00:00:00Z", "account": {"uuid": "acc-1"},
         "chat_messages": [{"sender": "human", "text": "hi", "content": []}]},
    ])
    convs, report = read(path)
    assert report.format == "claude_export" and report.accounts == 1
    assert convs[0].id == "cl-1" and convs[0].account_id == "acc-1" and convs[0].created_at == T0
    assert convs[0].messages[1].content == "sure\ndone"
    assert convs[0].metadata == {"name": "Trip"}
    assert convs[1].messages[0].content == "hi"


def test_chatgpt_export_follows_current_branch(tmp_path):
    convs, report = read(write_json(tmp_path / "conversations.json", [chatgpt_conversation(0)]))
    (c,) = convs
    assert report.format == "chatgpt_export"
    assert [(m.role, m.content) for m in c.messages] == [("user", "question 0"), ("assistant", "final answer 0")]
    assert c.id == "chat-0" and c.metadata["title"] == "title 0"
    assert c.created_at == datetime.fromtimestamp(1700000000.5, tz=timezone.utc)


def test_prompt_jsonl_metadata(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [
        {"uid": "abc", "category": "hard", "prompt": "write zig"},
        {"text": "book a flight", "label": "book_flight", "parent_label": None, "language": "en"},
    ])
    convs, report = read(path)
    assert report.format == "prompt"
    assert convs[0].id == "abc" and convs[0].metadata == {"category": "hard"}
    assert convs[0].messages[0].role == "user" and convs[0].messages[0].content == "write zig"
    assert convs[1].id == "q.jsonl:2"
    assert convs[1].metadata == {"label": "book_flight", "parent_label": None, "language": "en"}


def test_csv_message_rows(tmp_path):
    path = tmp_path / "msgs.csv"
    path.write_text(
        "conversation_id,turn,role,content,user_id,created_at\n"
        "a,2,assistant,\"multi\nline\",u1,1714564800\n"
        "a,1,user,hello,u1,1714564800\n"
        "b,1,user,bye,,\n",
        encoding="utf-8",
    )
    convs, report = read(path, order_column="turn", missing_accounts="pool")  # b has no user_id: mixed input
    assert report.format == "csv" and report.conversations == 2
    a, b = convs
    assert a.id == "a" and [m.content for m in a.messages] == ["hello", "multi\nline"]
    assert a.account_id == "u1" and a.created_at == T0
    assert b.account_id is None and b.created_at is None
    # file order without order_column
    convs, _ = read(path, missing_accounts="pool")
    assert [m.role for m in convs[0].messages] == ["assistant", "user"]


def test_csv_conversation_rows(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text("id,text,label\n1,first,x\n2,second,y\n", encoding="utf-8")
    convs, _ = read(path)
    assert [c.id for c in convs] == ["1", "2"] and convs[1].metadata == {"label": "y"}
    path = tmp_path / "msgs_json.csv"
    path.write_text('id,messages\nm1,"[{""role"": ""user"", ""content"": ""hi""}]"\n', encoding="utf-8")
    convs, _ = read(path)
    assert convs[0].messages[0].content == "hi"


def test_parquet_both_layouts(tmp_path):
    rows = pa.table({
        "conversation_id": ["a", "a", "b"], "role": ["user", "assistant", "user"], "content": ["q", "r", "s"],
        "account_id": ["x", "x", "y"],
        "created_at": pa.array([T0, T0, T0], pa.timestamp("s", tz="UTC")),
    })
    pq.write_table(rows, tmp_path / "m.parquet")
    convs, report = read(tmp_path / "m.parquet")
    assert report.format == "parquet" and [len(c.messages) for c in convs] == [2, 1]
    assert convs[0].account_id == "x" and convs[0].created_at == T0
    per_conv = pa.table({"id": [1, 2], "messages": [[{"role": "user", "content": "q1"}], [{"role": "user", "content": "q2"}]]})
    pq.write_table(per_conv, tmp_path / "c.parquet")
    convs, _ = read(tmp_path / "c.parquet")
    assert [c.id for c in convs] == ["1", "2"] and convs[1].messages[0].content == "q2"


def test_table_layout_override(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("conversation_id,role,content,text\nc,user,msg,prompt text\n", encoding="utf-8")
    assert read(path)[0][0].messages[0].content == "msg"
    assert read(path, table_layout="conversation")[0][0].messages[0].content == "prompt text"


def test_format_override(tmp_path):
    # A record with both a text field and messages is detected as openai; forcing "prompt" reads the text.
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": "the prompt", "messages": [{"role": "user", "content": "m"}]}])
    assert read(path)[0][0].messages[0].content == "m"
    convs, report = read(path, format="prompt")
    assert convs[0].messages[0].content == "the prompt" and report.format == "prompt"
    with pytest.raises(InputError, match="field 'conversations': missing"):
        read(path, format="sharegpt")


def test_unknown_format_option_rejected():
    with pytest.raises(ValueError):
        IngestOptions(format="xml")
    assert len(FORMATS) == 8


def test_custom_fields(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [
        {"key": "k1", "who": 42, "when": "2024-05-01T12:00:00", "body": "hello", "user": "ignored"}])
    (c,), report = read(path, id_field="key", account_field="who", time_field="when", text_field="body")
    assert (c.id, c.account_id, c.created_at) == ("k1", "42", T0)
    assert c.messages[0].content == "hello" and c.metadata == {"user": "ignored"}


@pytest.mark.parametrize("value", ["2024-05-01T12:00:00Z", "2024-05-01T14:00:00+02:00", "2024-05-01T12:00:00",
                                   1714564800, 1714564800.0, "1714564800", 1714564800000])
def test_time_formats(tmp_path, value):
    path = write_jsonl(tmp_path / "t.jsonl", [{"created_at": value, "messages": [{"role": "user", "content": "x"}]}])
    assert read(path)[0][0].created_at == T0


def test_account_defaults_and_missing_flag(tmp_path):
    msgs = [{"role": "user", "content": "x"}]
    path = write_jsonl(tmp_path / "a.jsonl", [
        {"user_id": "u1", "messages": msgs}, {"account_id": "u2", "messages": msgs + msgs},
        {"user": "u1", "user_id": "other", "messages": msgs * 3}, {"messages": msgs * 4}])
    with pytest.raises(InputError, match="a.jsonl:4: conversation without an account id"):
        read(path)  # mixed: the account-less one would count as an account of its own
    convs, report = read(path, missing_accounts="pool")
    assert [c.account_id for c in convs] == ["u1", "u2", "u1", None]
    assert report.accounts == 3 and report.account_ids == "pooled" and not report.missing_account
    path = write_jsonl(tmp_path / "b.jsonl", [{"messages": msgs}, {"messages": msgs * 2}])
    convs, report = read(path)
    assert report.missing_account and report.account_ids == "absent" and report.accounts == 2


def test_duplicates_removed_and_counted(tmp_path):
    msgs = [{"role": "user", "content": "same"}]
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"id": "1", "messages": msgs}, {"id": "2", "messages": msgs}, {"id": "3", "messages": msgs + msgs}])
    convs, report = read(path)
    assert [c.id for c in convs] == ["1", "3"] and report.duplicates == 1 and report.conversations == 2
    convs, report = read(path, dedupe=False)
    assert len(convs) == 3 and report.duplicates == 0


def test_directory_and_gz(tmp_path):
    write_jsonl(tmp_path / "b.jsonl.gz", [{"text": "from gz"}], gz=True)
    write_jsonl(tmp_path / "a.jsonl", [{"text": "plain"}])
    (tmp_path / "sub").mkdir()
    write_json(tmp_path / "sub" / "c.json", [chatgpt_conversation(1)])
    (tmp_path / "notes.txt").write_text("ignored: not a supported extension")
    convs, report = read(tmp_path)
    assert [c.messages[0].content for c in convs] == ["plain", "from gz", "question 1"]
    assert [c.id for c in convs] == ["a.jsonl:1", "b.jsonl.gz:1", "chat-1"]
    assert report.files == 3 and report.format == "prompt,chatgpt_export"


def test_directory_lists_unknown_files(tmp_path):
    write_jsonl(tmp_path / "data.jsonl", [{"text": "x"}])
    write_json(tmp_path / "domains.json", {"banking": ["a", "b"]})
    convs, report = read(tmp_path)
    assert len(convs) == 1 and report.files == 1
    assert len(report.skipped_files) == 1 and "domains.json" in report.skipped_files[0]


def test_utf8_bom(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"text": "caf\xc3\xa9"}\n')
    assert read(path)[0][0].messages[0].content == "café"
    csv_path = tmp_path / "bom.csv"
    csv_path.write_bytes(b"\xef\xbb\xbftext\nhello\n")
    assert read(csv_path)[0][0].messages[0].content == "hello"


def test_report_to_dict_is_json(tmp_path):
    import orjson

    path = write_jsonl(tmp_path / "r.jsonl", [{"text": "x"}])
    _, report = read(path)
    d = orjson.loads(orjson.dumps(report.to_dict()))
    assert d["conversations"] == 1 and d["format"] == "prompt" and d["missing_account"] is True


def test_single_pretty_printed_object(tmp_path):
    path = write_json(tmp_path / "one.json", {"id": "solo", "messages": [{"role": "user", "content": "x"}]})
    convs, report = read(path)
    assert [c.id for c in convs] == ["solo"] and report.format == "openai"


def test_gzipped_csv(tmp_path):
    import gzip

    path = tmp_path / "rows.csv.gz"
    path.write_bytes(gzip.compress(b"conversation_id,role,content\n7,user,a\n7,assistant,b\n"))
    (c,), report = read(path)
    assert c.id == "7" and [m.role for m in c.messages] == ["user", "assistant"] and report.format == "csv"
