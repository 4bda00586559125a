"""The docs name every metric and error class exactly as the code does (one name per concept)."""

from __future__ import annotations

import re
from pathlib import Path

from mothership.api.vocabulary import METRICS, ErrorClass

DOC = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text()


def table_rows() -> dict[str, list[str]]:
    rows = {}
    for line in DOC.splitlines():
        cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 7:
            rows[cells[0]] = cells
    return rows


def test_every_metric_in_the_vocabulary_has_a_docs_row_with_its_prometheus_name_and_summary_field() -> None:
    rows = table_rows()
    for m in METRICS:
        assert m.name in rows, f"docs/metrics.md lacks {m.name}"
        assert rows[m.name][3] == m.prometheus
        assert rows[m.name][4] == m.summary_field
        assert rows[m.name][1] == m.kind.value


def test_the_docs_table_names_no_metric_the_code_does_not_have() -> None:
    assert set(table_rows()) == {m.name for m in METRICS}


def test_every_error_class_is_documented() -> None:
    documented = set(re.findall(r"^\| `(\w+)` \| (?!counter|rate|trend|gauge)", DOC, re.M))
    assert documented == {c.value for c in ErrorClass}
