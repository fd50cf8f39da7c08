"""Logit comparison: softmax, the export's atol/rtol comparison, the guard's agreement."""

from __future__ import annotations

import numpy as np
import pytest

from dacovid_export.core.errors import CheckFailedError
from dacovid_export.data.agreement import (
    check_numeric,
    compare_numeric,
    measure_agreement,
    softmax,
)


def test_softmax_is_stable() -> None:
    p = softmax(np.array([[1000.0, 0.0, -1000.0]]))
    assert np.isfinite(p).all() and p[0, 0] == pytest.approx(1.0)


def test_compare_numeric_tolerance_and_ties() -> None:
    ref = np.array([[10.0, 0.0, -5.0], [1.0, 1.0005, 0.0]], dtype=np.float32)
    ok = compare_numeric(ref, ref + 1e-4, atol=0.0, rtol=1e-4)
    assert ok and ok.max_abs_error == pytest.approx(1e-4, rel=1e-2) and ok.scale == 10.0
    # the second row's top-2 margin (5e-4) is below twice the allowed error: a flip there is a tie, not a failure
    flipped = ref.copy()
    flipped[1] = [1.0005, 1.0, 0.0]
    tie = compare_numeric(ref, flipped, atol=0.0, rtol=1e-4)
    assert tie.passed and tie.top1_agreement == 0.5 and tie.top1_disagreements == 0
    bad = compare_numeric(ref, ref * 0.5, atol=1e-3, rtol=1e-3)
    assert not bad and "FAILED" in bad.describe()
    nan = compare_numeric(ref, np.full_like(ref, np.nan), atol=1.0, rtol=1.0)
    assert not nan


def test_a_reported_comparison_is_no_gate_but_nan_still_is() -> None:
    """INT8: the accuracy guard decides; the logit tolerance is reported, and only non-finite logits refuse."""
    import dataclasses

    ref = np.array([[10.0, 0.0, -5.0]], dtype=np.float32)
    far = dataclasses.replace(compare_numeric(ref, ref * 0.5, atol=1e-3, rtol=1e-3), enforced=False)
    assert far and not far.passed and "beyond tolerance, reported only" in far.describe()
    check_numeric([far], "int8")
    nan = dataclasses.replace(compare_numeric(ref, np.full_like(ref, np.nan), atol=1.0, rtol=1.0), enforced=False)
    with pytest.raises(CheckFailedError, match="FAILED"):
        check_numeric([far, nan], "int8")


def test_check_numeric_lists_every_failure() -> None:
    ref = np.array([[10.0, 0.0, -5.0]], dtype=np.float32)
    ok = compare_numeric(ref, ref, atol=0.0, rtol=1e-4)
    check_numeric([ok], "same")
    with pytest.raises(CheckFailedError, match="half: outputs differ beyond tolerance: batch 1"):
        check_numeric([ok, compare_numeric(ref, ref * 0.5, atol=1e-3, rtol=1e-3)], "half")


def test_measure_agreement_counts_changed_answers() -> None:
    ref = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 1.0]])
    cand = ref.copy()
    cand[0] = [0.0, 2.0]  # one answer flips, by 2 logits on each entry
    got = measure_agreement(ref, cand)
    assert got.images == 4 and got.agreement == 0.75
    assert got.max_abs_dlogit == 2.0 and got.mean_abs_dlogit == pytest.approx(0.5)
    assert measure_agreement(ref, ref).key() > got.key()
