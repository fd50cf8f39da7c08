"""The one accuracy-guard loop: measure -> rank -> search -> floor, for every guarded precision.

A guard judges a reduced-precision model by its top-1 agreement with the FP32 model on unseen
validation images and, below the target, takes the nodes that cost the most answers out of the
reduced precision until the target holds. What differs between precisions is a
:class:`GuardPolicy` (how a candidate is made and run, how nodes are ranked; INT8:
:mod:`calibration.guard`, FP16: :mod:`calibration.fp16_guard`, BF16: :mod:`calibration.bf16`, which
has nothing to search) and a :class:`SearchStrategy` (which prefixes of the ranking are tried):

- :class:`PrefixDoubling`: the top 1, 2, 4, ... nodes (FP16: AutoCast reconverts per candidate);
- :class:`ScreenedCumulative`: the top 1, 2, 3, ... nodes, each candidate first run on the images
  closest to flipping, and on the whole set only when the target is still reachable (INT8:
  rewiring a Q/DQ graph is cheap, running it is not).

The floor is one rule for all: no candidate may leave fewer than ``floor`` of the convolutions in
the reduced precision (a "reduced" model that is mostly FP32 is not one). The policy writes its
report from the :class:`GuardOutcome`; the engine never writes a file.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from dacovid_export.calibration.sensitivity import at_risk_images
from dacovid_export.core.log import get_logger, info_if
from dacovid_export.data.agreement import Agreement, measure_agreement

__all__ = [
    "Candidate",
    "RankedNode",
    "GuardPolicy",
    "SearchStrategy",
    "PrefixDoubling",
    "ScreenedCumulative",
    "GuardOutcome",
    "allowed_prefix",
    "run_guard",
]

_logger = get_logger("calibration")


@dataclasses.dataclass(frozen=True)
class RankedNode:
    """A node the search may take out of the reduced precision: its graph name, a label for people, its op."""

    name: str
    label: str
    op_type: str


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One measured model.

    ``model``: what the policy runs and writes (INT8: an ``onnx.ModelProto``; FP16: the AutoCast
    file and its result). ``logits``: on the whole validation set, or (``screened``) on the at-risk
    images only, where it already missed the target. ``out``: the ranked nodes taken out of the
    reduced precision. ``reduced_convs``: convolutions left in the reduced precision. ``source``:
    what the policy made it from (INT8: the calibrated model and its method).
    """

    label: str
    model: Any
    logits: np.ndarray
    agreement: Agreement
    reduced_convs: int
    out: tuple[RankedNode, ...] = ()
    screened: bool = False
    source: Any = None


class GuardPolicy(abc.ABC):
    """What one precision's guard does at each stage; one instance per guard run.

    Set by the constructor: ``name`` ("INT8"), ``target`` (agreement to reach), ``floor`` (least
    share of convolutions left reduced), ``convs`` (all convolutions), ``images`` and ``reference``
    (the validation images and FP32's logits on them), ``ranking_images`` (at most this many
    at-risk images rank the nodes and screen the candidates).
    """

    name: str
    target: float
    floor: float
    convs: int
    images: np.ndarray
    reference: np.ndarray
    ranking_images: int = 64

    @abc.abstractmethod
    def first(self) -> Iterator[Candidate]:
        """The candidates before any search, in order (the engine stops at the first that meets the target)."""

    def ready(self, best: Candidate) -> bool:
        """Whether a search can help ``best`` (False: refuse with what was measured)."""
        return True

    def rank(self, best: Candidate, at_risk: np.ndarray) -> list[RankedNode]:
        """The nodes to take out of the reduced precision, costliest first (empty: nothing to search)."""
        return []

    def reduced_at_start(self, best: Candidate) -> int:
        """The convolutions the floor counts down from (INT8: all of them, as its report counts)."""
        return best.reduced_convs

    def build(self, best: Candidate, out: Sequence[RankedNode]) -> tuple[Any, int]:
        """``best`` with ``out`` taken out of the reduced precision: ``(model, reduced convolutions)``."""
        raise NotImplementedError(f"the {self.name} guard has nothing to take out of {self.name}")

    @abc.abstractmethod
    def run(self, model: Any, images: np.ndarray) -> np.ndarray:
        """Logits of a candidate ``model`` on ``images``."""

    def label(self, best: Candidate, out: Sequence[RankedNode]) -> str:
        return f"{len(out)} out of {self.name}"

    def describe(self, candidate: Candidate) -> str:
        """The log line of a measured candidate."""
        return f"{self.name} guard: {candidate.label}: {candidate.agreement.describe()}"


class SearchStrategy(abc.ABC):
    """Which prefixes of the ranking are tried, and whether each is screened on the at-risk images first."""

    screen: bool = False

    @abc.abstractmethod
    def prefixes(self, allowed: int) -> Iterator[int]:
        """Prefix lengths to try, each at most ``allowed``, in order."""


class PrefixDoubling(SearchStrategy):
    """The top 1, 2, 4, ... of the ranking, and last exactly ``allowed``: few candidates when each is costly to make."""

    def prefixes(self, allowed: int) -> Iterator[int]:
        count = 1
        while count <= allowed:
            yield count
            if count == allowed:
                return
            count = min(count * 2, allowed)


class ScreenedCumulative(SearchStrategy):
    """The top 1, 2, 3, ...: each candidate adds the next node, screened first on the images closest to flipping."""

    screen = True

    def prefixes(self, allowed: int) -> Iterator[int]:
        yield from range(1, allowed + 1)


@dataclasses.dataclass(frozen=True)
class GuardOutcome:
    """What the loop measured: every candidate tried (in order), the best before the search, the one chosen."""

    tried: tuple[Candidate, ...]
    first: Candidate
    chosen: Candidate
    ranking: tuple[RankedNode, ...]
    target: float

    @property
    def passed(self) -> bool:
        return self.chosen.agreement.agreement >= self.target

    @property
    def searched(self) -> tuple[Candidate, ...]:
        """The candidates of the search (those with nodes taken out)."""
        return tuple(c for c in self.tried if c.out)


def allowed_prefix(ranking: Sequence[RankedNode], reduced: int, convs: int, floor: float) -> tuple[int, RankedNode | None, int]:
    """How many of ``ranking`` may be taken out before the convolutions left reduced fall below ``floor``.

    ``reduced``: convolutions in the reduced precision before any is taken out. Returns the count,
    the node that would cross the floor (``None``: none does) and how many convolutions it would leave.
    """
    left = reduced
    for i, node in enumerate(ranking):
        if node.op_type == "Conv":
            if convs and (left - 1) / convs < floor:
                return i, node, left - 1
            left -= 1
    return len(ranking), None, left


def run_guard(policy: GuardPolicy, strategy: SearchStrategy, *, progress: bool) -> GuardOutcome:
    """Measure, then (below the target, when the policy says a search can help) rank, floor and search."""
    tried: list[Candidate] = []
    for candidate in policy.first():
        tried.append(candidate)
        info_if(_logger, policy.describe(candidate), progress)
        if candidate.agreement.agreement >= policy.target:
            break
    first = max(tried, key=lambda c: c.agreement.key())
    chosen, ranking = first, ()
    if first.agreement.agreement < policy.target and policy.ready(first):
        at_risk = at_risk_images(policy.reference, first.logits, policy.ranking_images)
        ranking = tuple(policy.rank(first, at_risk))
        allowed, stop, left = allowed_prefix(ranking, policy.reduced_at_start(first), policy.convs, policy.floor)
        chosen = _search(policy, strategy, first, ranking, allowed, at_risk, tried, progress)
        if stop is not None and not chosen.agreement.agreement >= policy.target:
            info_if(
                _logger,
                f"{policy.name} guard: stopping: taking out {stop.label} would leave {left}/{policy.convs} convolutions "
                f"{policy.name}",
                progress,
            )
    return GuardOutcome(tuple(tried), first, chosen, ranking, policy.target)


def _search(
    policy: GuardPolicy,
    strategy: SearchStrategy,
    first: Candidate,
    ranking: tuple[RankedNode, ...],
    allowed: int,
    at_risk: np.ndarray,
    tried: list[Candidate],
    progress: bool,
) -> Candidate:
    """Try the strategy's prefixes of ``ranking``; the first candidate to meet the target, else the best measured."""
    best = first
    for count in strategy.prefixes(allowed):
        out = ranking[:count]
        model, reduced = policy.build(first, out)
        label = policy.label(first, out)
        if strategy.screen:
            # the at-risk images are a subset of the validation set: the answers that differ there differ on the whole
            # set too, so a candidate that already misses the target there cannot meet it on all (the whole run is skipped)
            screen = measure_agreement(policy.reference[at_risk], policy.run(model, policy.images[at_risk]))
            differ = screen.images - round(screen.agreement * screen.images)
            if (len(policy.images) - differ) / len(policy.images) < policy.target:
                tried.append(Candidate(label, model, np.empty((0,)), screen, reduced, out, screened=True, source=first.source))
                info_if(
                    _logger,
                    f"{policy.name} guard: {label}: {differ} of the {screen.images} at-risk images still differ: "
                    "cannot reach the target",
                    progress,
                )
                continue
        logits = policy.run(model, policy.images)
        candidate = Candidate(label, model, logits, measure_agreement(policy.reference, logits), reduced, out,
                              source=first.source)
        tried.append(candidate)
        info_if(_logger, policy.describe(candidate), progress)
        if candidate.agreement.key() > best.agreement.key():
            best = candidate
        if candidate.agreement.agreement >= policy.target:
            return candidate
    return best
