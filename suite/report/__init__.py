"""Reports: README.md, tables and figures regenerated from run records and benchmark files
(docs/records.md).

    from suite.report import generate_report
    report = generate_report([Path("runs")], Path("reports"))   # report.readme, report.left_out
"""

from .readme import Report, build_report as generate_report

__all__ = ["Report", "generate_report"]
