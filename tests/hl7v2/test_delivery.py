"""Acknowledged means applied: a burst over MLLP is applied by a real worker, with no beat running."""

import asyncio

import hl7
import pytest
from hl7.mllp import open_hl7_connection

from hie.hl7v2.models import InboundMessage, MessageState
from matching.models import PatientRecord
from tests.conftest import wait_for, worker_log_problems
from tests.hl7v2.conftest import adt
from tests.hl7v2.test_mllp import code, pid

pytestmark = [pytest.mark.worker]

CONNECTIONS = 4
PATIENTS_PER_CONNECTION = 30  # each sends an A04 and then an A08 that moves the patient


def burst(port: int) -> list[str]:
    """Every connection sends its messages back to back, each after the previous one's ACK."""

    async def one(connection: int) -> list[str]:
        reader, writer = await open_hl7_connection("127.0.0.1", port)
        codes = []
        for n in range(PATIENTS_PER_CONNECTION):
            mrn = f"B{connection}-{n}"
            for event, city in (("A04", "Fairview"), ("A08", "Gresham")):
                writer.writemessage(hl7.parse(adt(event, f"{mrn}-{event}", pid(mrn, city=city))))
                await writer.drain()
                codes.append(code(await asyncio.wait_for(reader.readmessage(), 30)))
        writer.close()
        return codes

    async def all_at_once() -> list[list[str]]:
        return await asyncio.gather(*(one(c) for c in range(CONNECTIONS)))

    return [c for codes in asyncio.run(all_at_once()) for c in codes]


def test_every_acknowledged_message_of_a_burst_is_applied_within_seconds(mllp, facility, celery_worker):
    codes = burst(mllp)
    total = CONNECTIONS * PATIENTS_PER_CONNECTION * 2
    assert codes == ["AA"] * total

    # No beat runs here: only the tasks the listener sent on each commit can apply them.
    def all_applied() -> bool:
        return InboundMessage.objects.filter(state=MessageState.PROCESSED).count() == total

    wait_for(all_applied, timeout=60, explain=lambda: (
        f"{InboundMessage.objects.exclude(state=MessageState.PROCESSED).count()} of {total} not applied\n"
        + worker_log_problems(celery_worker)
    ))  # fmt: skip
    # Each applied once, and each patient's A08 after its A04.
    assert set(InboundMessage.objects.values_list("attempts", flat=True)) == {1}
    records = PatientRecord.objects.filter(local_id__startswith="B")
    assert records.count() == CONNECTIONS * PATIENTS_PER_CONNECTION
    assert set(records.values_list("city", "version")) == {("Gresham", 2)}
