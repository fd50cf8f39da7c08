"""The one guard loop on a toy policy: the model is the set of nodes taken out, each of which restores one answer."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from dacovid_export.calibration.guard_engine import (
    Candidate,
    GuardPolicy,
    PrefixDoubling,
    RankedNode,
    ScreenedCumulative,
    allowed_prefix,
    run_guard,
)
from dacovid_export.data.agreement import measure_agreement

NODES = tuple(RankedNode(f"conv{i}", f"conv {i}", "Conv") for i in range(3))


class _Toy(GuardPolicy):
    """10 images, 3 of them flipped by the reduced precision; taking ``conv{i}`` out restores image ``i``."""

    def __init__(self, *, target: float, floor: float = 0.0, convs: int = 10, first_models: int = 1) -> None:
        self.name, self.target, self.floor, self.convs = "TOY", target, floor, convs
        self.images = np.arange(10)
        self.reference = np.tile(np.array([[3.0, 1.0, 0.0]]), (10, 1))
        self.first_models = first_models
        self.ranking_images = 3  # the at-risk images: the three flipped ones
        self.runs: list[tuple[tuple[str, ...], int]] = []  # (nodes out, images run on)

    def run(self, model: frozenset[str], images: np.ndarray) -> np.ndarray:
        self.runs.append((tuple(sorted(model)), len(images)))
        logits = self.reference[images].copy()
        for row, image in enumerate(images):
            if image < 3 and f"conv{image}" not in model:
                logits[row] = [0.0, 1.0, 3.0]  # a flipped answer
        return logits

    def _candidate(self, label: str, model: frozenset[str]) -> Candidate:
        logits = self.run(model, self.images)
        return Candidate(label, model, logits, measure_agreement(self.reference, logits), self.convs - len(model))

    def first(self) -> Iterator[Candidate]:
        for i in range(self.first_models):
            yield self._candidate(f"start {i}", frozenset())

    def rank(self, best: Candidate, at_risk: np.ndarray) -> list[RankedNode]:
        return list(NODES)

    def build(self, best: Candidate, out: Sequence[RankedNode]) -> tuple[frozenset[str], int]:
        return frozenset(n.name for n in out), self.convs - len(out)


def test_strategies_try_their_prefixes() -> None:
    assert list(PrefixDoubling().prefixes(5)) == [1, 2, 4, 5]
    assert list(PrefixDoubling().prefixes(4)) == [1, 2, 4]
    assert list(ScreenedCumulative().prefixes(3)) == [1, 2, 3]
    assert list(PrefixDoubling().prefixes(0)) == []


@pytest.mark.parametrize("strategy, tried", [(PrefixDoubling(), [1, 2, 3]), (ScreenedCumulative(), [1, 2, 3])])
def test_the_search_stops_at_the_first_candidate_that_meets_the_target(strategy, tried) -> None:
    policy = _Toy(target=1.0)
    outcome = run_guard(policy, strategy, progress=False)
    assert outcome.passed and outcome.first.agreement.agreement == 0.7
    assert [len(c.out) for c in outcome.searched] == tried
    assert outcome.chosen.out == NODES and outcome.chosen.reduced_convs == 7


def test_screening_skips_the_full_run_of_a_candidate_that_cannot_reach_the_target() -> None:
    policy = _Toy(target=1.0)
    outcome = run_guard(policy, ScreenedCumulative(), progress=False)
    screened = [c for c in outcome.searched if c.screened]
    assert [len(c.out) for c in screened] == [1, 2]  # flipped images left on the at-risk set: no run on all ten
    assert policy.runs[1:] == [(("conv0",), 3), (("conv0", "conv1"), 3), (("conv0", "conv1", "conv2"), 3),
                               (("conv0", "conv1", "conv2"), 10)]


def test_a_lower_target_is_met_sooner_and_the_first_candidates_stop_early() -> None:
    outcome = run_guard(_Toy(target=0.8, first_models=3), ScreenedCumulative(), progress=False)
    assert len([c for c in outcome.tried if not c.out]) == 3  # no start candidate met 0.8: all three were tried
    assert outcome.chosen.out == NODES[:1] and outcome.passed
    met = run_guard(_Toy(target=0.7, first_models=3), ScreenedCumulative(), progress=False)
    assert [c.label for c in met.tried] == ["start 0"] and met.chosen is met.first  # the first already meets it


def test_the_floor_stops_the_search_and_the_outcome_says_it_failed() -> None:
    # 4 convolutions, at least half must stay reduced: only 2 may be taken out
    assert allowed_prefix(NODES, 4, 4, 0.5)[:2] == (2, NODES[2])
    assert allowed_prefix(NODES, 4, 4, 0.0)[:2] == (3, None)
    outcome = run_guard(_Toy(target=1.0, floor=0.5, convs=4), PrefixDoubling(), progress=False)
    assert not outcome.passed
    assert max(len(c.out) for c in outcome.searched) == 2 and outcome.chosen.agreement.agreement == pytest.approx(0.9)
