"""`parity audit`: where the money goes in a team's Claude API logs and what each lever would save.

`run.py` drives one streaming pass (`auditor.py`, bounded state per family; `parallel.py` splits large JSONL
files across processes) and `report.py` builds the JSON report from it. The levers: exact cost (`cost.py`),
template families (`parity.fingerprint`), the prompt cache (`cache.py`, with `cache_diagnosis.py` for why two
requests diverge and `cache_diff.py` for `parity cache-diff`), the Batches API (`batch.py`), right-sizing
(`rightsize.py`); `savings.py` stacks them, `findings.py` holds the Finding record and the JSON Schema of the
report, and `parity.report.audit_terminal` prints it (the full report, or `print_audit`'s one-screen summary).
"""

from parity.audit.cache_diagnosis import diagnose
from parity.audit.cache_diff import cache_diff
from parity.fingerprint import fingerprint
from parity.audit.findings import CACHE_CAUSES, REPORT_SCHEMA, Finding, validate_report
from parity.audit.run import AuditOptions, AuditReport, Auditor, audit_exchanges, audit_paths

__all__ = [
    "CACHE_CAUSES",
    "REPORT_SCHEMA",
    "AuditOptions",
    "AuditReport",
    "Auditor",
    "Finding",
    "audit_exchanges",
    "audit_paths",
    "cache_diff",
    "diagnose",
    "fingerprint",
    "validate_report",
]
