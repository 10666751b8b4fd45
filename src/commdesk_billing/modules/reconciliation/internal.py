"""Internal reconciliation: every `ledger verify` invariant (`wiring.verify_checks()`), each
problem a finding, and each check's count in `billing_ledger_invariant_violations{check}`
under the check's own name (0 when clean), and each finding code's under the code."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.modules.ledger.verify import Check, CheckRun, verify_ledger
from commdesk_billing.modules.reconciliation.model import Kind, Source, SourceResult
from commdesk_billing.modules.reconciliation.service import observed
from commdesk_billing.telemetry.metrics import LEDGER_INVARIANT_VIOLATIONS

# Finding codes this process has published (so a fault put right shows 0 again).
_CODES_SEEN: set[str] = set()


async def reconcile(engine: AsyncEngine, checks: Sequence[Check]) -> SourceResult:
    """Run `checks` in one snapshot (`verify_ledger`), counting each check's own findings (a
    check reports under codes of its own, not its name). `checked`: the checks run;
    `matched`: those that found nothing."""
    per_check: dict[str, int] = {}

    def ran(run: CheckRun) -> None:
        per_check[run.name] = run.findings

    report = await verify_ledger(engine, list(checks), progress=ran)
    for name, n in per_check.items():
        LEDGER_INVARIANT_VIOLATIONS.labels(name).set(n)
    # Each finding code too, where it is not a check's name (`wallet_negative` of the
    # `wallet_balances` check: the negative-balance alert reads it); a code found before and
    # not now goes back to 0.
    per_code = Counter(f.check for f in report.findings if f.check not in per_check)
    for code in _CODES_SEEN | set(per_code):
        LEDGER_INVARIANT_VIOLATIONS.labels(code).set(per_code.get(code, 0))
    _CODES_SEEN.update(per_code)
    result = SourceResult(
        Source.internal,
        checked=len(per_check),
        matched=sum(1 for n in per_check.values() if n == 0),
    )
    for f in report.findings:
        result.observed.append(
            observed(
                Source.internal,
                Kind.invariant_violation,
                # A finding's code and subject name one fault; the same fault next run has
                # the same pair, so it is the same finding.
                f"{f.check}:{f.subject}",
                f.detail,
                refs={"code": f.check, "subject": f.subject},
            )
        )
    return result
