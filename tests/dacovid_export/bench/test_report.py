"""Bench report: the markdown table, and the CSV, JSON and PNG written atomically."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from dacovid_export.bench.records import RECORD_KEYS
from dacovid_export.bench.report import format_markdown, plot_latency, save_bench_result


def test_markdown_table_environment_and_baseline_ratio(cpu_result) -> None:
    text = format_markdown(cpu_result)
    assert "| artifact | backend | precision |" in text
    assert "p50 vs torch eager fp32" in text
    assert "## Environment" in text and "ONNX Runtime intra-op" in text
    assert "nearest-rank" in text
    # torch eager is its own baseline: ratio 1.00 in its column
    header = next(line for line in text.splitlines() if line.startswith("| artifact"))
    column = [c.strip() for c in header.strip("|").split("|")].index("p50 vs torch eager fp32")
    torch_rows = [line for line in text.splitlines() if line.startswith("| tiny.pt")]
    assert len(torch_rows) == 2 and all(row.strip("|").split("|")[column].strip() == "1.00" for row in torch_rows)


def test_markdown_states_cpu_rates_against_the_in_run_gemm(cpu_result) -> None:
    text = format_markdown(cpu_result)
    header = next(line for line in text.splitlines() if line.startswith("| artifact"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[-2:] == ["GFLOP/s", "x FP32 GEMM"]
    rows = {r.artifact + str(r.batch): r for r in cpu_result.records}
    for line in text.splitlines():
        if line.startswith("| tiny.pt"):
            row = [c.strip() for c in line.strip("|").split("|")]
            record = rows["tiny.pt" + row[cells.index("batch")]]
            assert float(row[-2]) == pytest.approx(record.gflops_per_s, abs=0.05)
            assert float(row[-1]) == pytest.approx(record.gemm_fraction, abs=0.005)
    g = cpu_result.gemm_gflops
    assert "FP32 GEMM 2048^3" in text and f"{min(g):.1f}-{max(g):.1f} GFLOP/s" in text and "load average" in text


def test_save_writes_csv_json_and_png(cpu_result, tmp_path: Path) -> None:
    written = save_bench_result(cpu_result, json=tmp_path / "b.json", csv=tmp_path / "b.csv", plot=tmp_path / "b.png")
    assert [p.name for p in written] == ["b.json", "b.csv", "b.png"]
    with open(tmp_path / "b.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == RECORD_KEYS
    assert [int(r["batch"]) for r in rows] == [1, 2, 1, 2]
    assert float(rows[2]["p50_ms"]) == pytest.approx(cpu_result.records[2].p50_ms)
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["records"][3]["p99_ms"] == pytest.approx(cpu_result.records[3].p99_ms)
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.csv", "b.json", "b.png"]  # no temporary files left


def test_plot_with_one_batch_size(cpu_result, tmp_path: Path) -> None:
    one = [r for r in cpu_result.records if r.batch == 1]
    assert plot_latency(one, tmp_path / "one.png").read_bytes()[:4] == b"\x89PNG"
