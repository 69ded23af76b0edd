"""``mixkit.diagnose``: will mixup hurt on my data, and which density should relabel it?

:func:`diagnose` measures manifold intrusion, label conflict and the fit of each
density on a sample of mixed points, without training a classifier, and draws a
recommendation from them; :mod:`.report` writes it as markdown, JSON and a PNG;
:mod:`.files` reads the CSV / ``.npz`` / ``.pt`` files of ``mixkit diagnose FILE``.
"""

from mixkit.diagnosis.files import DataFileError, read_data
from mixkit.diagnosis.measure import DEFAULT_DENSITIES, DensityReport, Diagnosis, PairRate, Rate, diagnose
from mixkit.diagnosis.report import plot, to_json, to_markdown

__all__ = ["DEFAULT_DENSITIES", "DataFileError", "DensityReport", "Diagnosis", "PairRate", "Rate", "diagnose",
           "plot", "read_data", "to_json", "to_markdown"]
