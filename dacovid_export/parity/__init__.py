"""The parity verdict: does each deployed artifact give the answers of the trained model?

:mod:`.run` (tolerances, running every artifact on the same images,
:func:`~.run.run_parity`) and :mod:`.report` (the verdict, its JSON and its
confusion matrices).
"""

from dacovid_export.parity.report import ParityReport
from dacovid_export.parity.run import ParityConfig, run_parity

__all__ = ["ParityConfig", "ParityReport", "run_parity"]
