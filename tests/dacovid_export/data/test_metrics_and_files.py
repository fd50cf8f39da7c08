from __future__ import annotations

import os

import numpy as np
import pytest

from dacovid_export.core.fileio import atomic_path, atomic_write_json, sha256_file
from dacovid_export.data.metrics import classification_report, plot_confusion_matrix


def test_report_on_known_counts() -> None:
    # true:      0 0 0 1 1 2
    # predicted: 0 0 1 1 1 1
    report = classification_report([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 1, 1], ("a", "b", "c"))
    assert report.confusion == ((2, 1, 0), (0, 2, 0), (0, 1, 0))
    assert report.accuracy == pytest.approx(4 / 6)
    assert report.precision == pytest.approx((1.0, 0.5, 0.0))
    assert report.recall == pytest.approx((2 / 3, 1.0, 0.0))
    assert report.f1[0] == pytest.approx(0.8)
    assert report.support == (3, 2, 1)
    assert "accuracy" in report.format_table()
    assert report.to_dict()["per_class"]["b"]["recall"] == 1.0


def test_confusion_png(tmp_path) -> None:
    report = classification_report([0, 1, 2], [0, 2, 2], ("Normal", "Pneumonia", "COVID-19"))
    path = plot_confusion_matrix(report, tmp_path / "cm.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_atomic_path_leaves_nothing_on_failure(tmp_path) -> None:
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []


def test_atomic_json_and_sha(tmp_path) -> None:
    atomic_write_json(tmp_path / "a.json", {"x": np.float32(1.5).item()})
    assert (tmp_path / "a.json").read_text().strip().startswith("{")
    assert len(sha256_file(tmp_path / "a.json")) == 64
