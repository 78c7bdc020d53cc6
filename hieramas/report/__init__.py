"""``hieramas report``: a Markdown (or HTML) report with figures of a run, a comparison, a
bench file or a demo directory (:func:`write_report`).

One job per module: :mod:`.sources` reads what is on disk, :mod:`.analysis` counts
selections (top DAGs, Jaccard, LLM shares per role), :mod:`.figures` draws (matplotlib,
Agg), :mod:`.markdown` writes the document, :mod:`.build` puts them together.
"""

from hieramas.report.build import write_report
from hieramas.report.sources import SourceError

__all__ = ["SourceError", "write_report"]
