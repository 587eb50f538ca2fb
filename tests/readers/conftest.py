"""Generated fixtures in other tools' formats (tests/readers/fixtures/generate.py), written once per session."""

from __future__ import annotations

from typing import Any

import pytest

from readers.fixtures import generate


@pytest.fixture(scope="session")
def calls() -> list[generate.Call]:
    return generate.calls()


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory: pytest.TempPathFactory, calls: list[generate.Call]) -> dict[str, Any]:
    """{name: (path, malformed line numbers)} for every format, plus the clean cost report."""
    out = tmp_path_factory.mktemp("formats")
    made: dict[str, Any] = {}
    for name, writer in generate.WRITERS.items():
        made[name] = (out / name, writer(out / name, calls))
    generate.write_cost_report(out / "cost_report.json", calls)
    made["cost_report.json"] = (out / "cost_report.json", [])
    return made
