"""The parity verdict: does each deployed artifact give the answers of the trained model?

:mod:`.config` (tolerances per precision, validated options), :mod:`.run`
(every artifact on the same images, :func:`~.run.run_parity`; with the
files ``check`` writes, :func:`~.run.check_parity`), :mod:`.compare`
(one model judged against the reference) and :mod:`.report` (the verdict, its
JSON and its confusion matrices).
"""

from dacovid_export.parity.config import ParityConfig
from dacovid_export.parity.report import ParityReport
from dacovid_export.parity.run import check_parity, run_parity

__all__ = ["ParityConfig", "ParityReport", "check_parity", "run_parity"]
