"""What one pipeline run made and measured: :class:`PipelineResult`, and its summary for the terminal."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from dacovid_export.pipeline.embedded import EMBEDDED_NOTICE
from dacovid_export.pipeline.engines import EngineRecord
from dacovid_export.pipeline.exports import OnnxRecord
from dacovid_export.pipeline.latency import Headline
from dacovid_export.pipeline.outcomes import ArtifactEntry, FailedStep, SkippedStep

if TYPE_CHECKING:
    from dacovid_export.bench.cost import ArtifactCost
    from dacovid_export.bench.records import BenchResult
    from dacovid_export.parity.report import ParityReport
    from dacovid_export.pipeline.served import ServedOutcome

__all__ = ["PipelineResult"]


@dataclasses.dataclass(frozen=True)
class PipelineResult:
    """What the pipeline made and measured; ``passed`` is False if a step failed its check or parity failed.

    ``onnx`` and ``engines`` describe each model made (keyed by precision),
    ``step_seconds`` the wall time of each step, ``inputs_note`` what parity ran on.
    """

    out: Path
    report_md: Path
    report_json: Path
    embedded: bool
    artifacts: tuple[ArtifactEntry, ...]
    skipped: tuple[SkippedStep, ...]
    failed: tuple[FailedStep, ...]
    parity: "ParityReport | None"
    bench: "BenchResult | None"
    headline: tuple[Headline, ...]
    plots: tuple[Path, ...]
    wall_time_s: float
    onnx: Mapping[str, OnnxRecord] = dataclasses.field(default_factory=dict)
    engines: Mapping[str, EngineRecord] = dataclasses.field(default_factory=dict)
    step_seconds: Mapping[str, float] = dataclasses.field(default_factory=dict)
    model_cost: "ArtifactCost | None" = None
    inputs_note: str = ""
    served: "ServedOutcome | None" = None

    @property
    def passed(self) -> bool:
        return not self.failed and (self.parity is None or bool(self.parity))

    def summary_lines(self) -> list[str]:
        lines = []
        if self.embedded:
            lines += [EMBEDDED_NOTICE, ""]
        for a in self.artifacts:
            lines.append(f"{a.role:<14} {a.path}  ({a.size_bytes / 2**20:.1f} MiB)")
        for s in self.skipped:
            lines.append(f"skipped {s.step}: {s.reason}")
        for f in self.failed:
            lines.append(f"FAILED {f.step}: {f.reason}")
        if self.parity is not None:
            lines.append(
                f"parity: {sum(m.passed for m in self.parity.models)}/{len(self.parity.models)} model(s) passed "
                f"-> {'PASS' if self.parity else 'FAIL'}"
            )
        for h in self.headline:
            lines.append(h.text())
        lines.append(f"report: {self.report_md} and {self.report_json} ({self.wall_time_s:.0f} s)")
        return lines
