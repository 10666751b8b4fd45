"""PDFs are drawn on a queue of their own: issuing (in each purchase's wake) never waits
behind a drawing, and each is counted apart."""

from __future__ import annotations

import ast
import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from commdesk_billing import wiring
from commdesk_billing.config import Settings
from commdesk_billing.modules.invoices.consumers import InvoiceGeneration, PdfRendering
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.queues.runtime import PermanentError

INVOICES = Path(__file__).resolve().parents[3] / "src/commdesk_billing/modules/invoices"


def _envelope(kind: str) -> Envelope:
    return Envelope(
        id=uuid.uuid4(),
        type=kind,
        occurred_at=datetime.now(UTC),
        payload={"invoice_id": str(uuid.uuid4()), "payment_id": str(uuid.uuid4())},
    )


def test_issuing_and_drawing_have_their_own_queues_and_handlers() -> None:
    built = wiring.handlers(Settings())
    assert isinstance(built[("invoice.generate", "payment.credited")], InvoiceGeneration)
    assert isinstance(built[("invoice.generate", "refund.succeeded")], InvoiceGeneration)
    assert isinstance(built[("invoice.render", "invoice.render")], PdfRendering)
    # Render messages written before the split are still drawn, by the drawing handler.
    assert isinstance(built[("invoice.generate", "invoice.render")], PdfRendering)
    assert wiring.TABLE.types("invoice.render") == ("invoice.render",)


def test_every_render_is_sent_to_the_render_queue() -> None:
    sends: list[tuple[str, str]] = []
    for path in INVOICES.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "send"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "outbox"
            ):
                queue, kind = node.args[1], node.args[2]
                assert isinstance(queue, ast.Constant)
                # A type chosen at run time (the job's re-announced documents) is not a render.
                if isinstance(kind, ast.Constant):
                    sends.append((str(queue.value), str(kind.value)))
    renders = [queue for queue, kind in sends if kind == "invoice.render"]
    assert len(renders) == 2, sends  # issuing announces it; the hourly job re-announces it
    assert set(renders) == {"invoice.render"}


@pytest.mark.parametrize(
    ("handler", "kind"),
    [
        (InvoiceGeneration(Settings()), "invoice.render"),
        (PdfRendering(None), "payment.credited"),  # type: ignore[arg-type]
    ],
)
def test_each_handler_refuses_the_other_ones_work(handler: object, kind: str) -> None:
    with pytest.raises(PermanentError, match="has no handler"):
        asyncio.run(handler(None, _envelope(kind)))  # type: ignore[operator]
