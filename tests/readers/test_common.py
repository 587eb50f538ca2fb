"""The file shapes every importer shares (`parity.readers.common`): one JSON reader (OTLP included), shape sniffing."""

from __future__ import annotations

import json
from pathlib import Path

from parity.exchange import Exchange, Rejected
from parity.readers import detect_format, read_exchanges
from parity.readers.common import RowError, file_shape, json_records
from readers.fixtures import generate


def _span(n: int) -> dict:
    return {"traceId": f"{n:032x}", "spanId": f"{n:016x}", "name": "chat", "startTimeUnixNano": "1793700000000000000",
            "endTimeUnixNano": "1793700001000000000",
            "attributes": [generate._attr("gen_ai.request.model", "claude-haiku-4-5"),
                           generate._attr("gen_ai.usage.input_tokens", 100 + n),
                           generate._attr("gen_ai.usage.output_tokens", 7)]}


def test_json_records_hands_back_the_document_text_only_for_whole_files(tmp_path: Path) -> None:
    lines = tmp_path / "a.jsonl"
    lines.write_text('{"a": 1}\n\n{oops\n{"a": 2}\n')
    got = list(json_records(lines))
    assert [(n, v if not isinstance(v, RowError) else "bad", t) for n, v, t in got] == [
        (1, {"a": 1}, None), (3, "bad", None), (4, {"a": 2}, None)]
    array = tmp_path / "b.json"
    text = json.dumps([{"a": 1}, {"a": 2}], indent=2)
    array.write_text(text)
    assert [(n, v, t) for n, v, t in json_records(array)] == [(2, {"a": 1}, text), (5, {"a": 2}, text)]
    document = tmp_path / "c.json"
    document.write_text(json.dumps({"a": 1}, indent=2))
    assert list(json_records(document)) == [(1, {"a": 1}, document.read_text())]


def test_otlp_reads_through_the_one_json_reader(tmp_path: Path) -> None:
    """A JSON array of OTLP exports (pretty-printed): every span, at the line of its spanId; before OTLP used its
    own reader, such a file was rejected whole."""
    path = tmp_path / "traces.json"
    path.write_text(json.dumps([generate._otlp_doc(_span(1)), generate._otlp_doc(_span(2))], indent=2))
    assert detect_format(path) == "otlp"
    items = list(read_exchanges(path))
    text = path.read_text().splitlines()
    assert [type(item) for _, item in items] == [Exchange, Exchange]
    for (line, item), n in zip(items, (1, 2)):
        assert f'"{n:016x}"' in text[line - 1] and item.usage["input_tokens"] == 100 + n
    lines = tmp_path / "traces.jsonl"
    lines.write_text(json.dumps(generate._otlp_doc(_span(3))) + "\n{not json\n")
    (first, second) = list(read_exchanges(lines, format="otlp"))
    assert first[0] == 1 and isinstance(first[1], Exchange)
    assert second[0] == 2 and isinstance(second[1], Rejected) and "not valid JSON" in second[1].reason


def test_file_shape_looks_past_whitespace_and_a_bom(tmp_path: Path) -> None:
    cases = {"a.json": b'  \n\xef\xbb\xbf [{"a": 1}]', "b.csv": b"request_id,spend\n", "c.parquet": b"PAR1...."}
    for name, raw in cases.items():
        (tmp_path / name).write_bytes(raw)
    assert [file_shape(tmp_path / n) for n in cases] == ["json", "csv", "parquet"]
