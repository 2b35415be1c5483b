"""What the MLLP port does with what is not a well-sized MLLP message: through the real socket."""

import asyncio
import time

import hl7
import pytest

from hie.hl7v2.framing import KEPT_BYTES
from hie.hl7v2.models import InboundMessage, MessageState
from matching.models import PatientRecord
from tests.hl7v2.conftest import adt, send
from tests.hl7v2.test_mllp import code, pid


async def _talk(port: int, data: bytes, wait: float) -> tuple[bytes, float]:
    """Send raw bytes; what came back until the listener closed (or `wait` passed), and how long that took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(data)
    await writer.drain()
    answer = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), wait):
            answer += chunk
    except TimeoutError:
        pass
    finally:
        writer.close()
    return answer, time.monotonic() - started


def talk(port: int, data: bytes, wait: float = 10) -> tuple[bytes, float]:
    return asyncio.run(_talk(port, data, wait))


def test_a_message_over_the_size_limit_is_refused_with_ar_and_the_connection_goes_on(mllp, facility, settings):
    assert settings.HL7_MAX_MESSAGE_BYTES == 4 * 1024 * 1024
    notes = "NTE|1||" + "x" * 5_000_000
    huge = adt("A04", "BIG1", pid("R1"), extra=notes)
    ack_huge, ack_next = send(mllp, huge, adt("A04", "N1", pid("R2")))
    assert code(ack_huge) == "AR"
    assert str(ack_huge.segment("MSA")[2]) == "BIG1"
    assert "larger than the limit of 4194304 bytes" in str(ack_huge.segment("MSA")[3])
    assert code(ack_next) == "AA"
    refused = InboundMessage.objects.get(control_id="BIG1")
    assert (refused.state, refused.ack_code) == (MessageState.REJECTED, "AR")
    assert len(refused.raw) == KEPT_BYTES  # its head is kept, not five megabytes
    assert list(PatientRecord.objects.values_list("local_id", flat=True)) == ["R2"]


def test_the_limit_is_a_setting(mllp, facility, settings):
    settings.HL7_MAX_MESSAGE_BYTES = 2000
    [ack] = send(mllp, adt("A04", "S1", pid("R1"), extra="NTE|1||" + "y" * 2000))
    assert code(ack) == "AR"
    assert "limit of 2000 bytes" in str(ack.segment("MSA")[3])


def test_http_on_the_mllp_port_is_answered_and_closed_at_once(mllp):
    answer, took = talk(mllp, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 Bad Request")
    assert b"HL7 v2 over MLLP" in answer
    assert took < 2
    answer, took = talk(mllp, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a TLS hello on the plain port
    assert (answer, took < 2) == (b"", True)
    assert not InboundMessage.objects.exists()


def test_a_message_that_never_ends_is_cut_off_after_the_frame_timeout(mllp, facility, settings):
    settings.HL7_FRAME_TIMEOUT_SECONDS = 1
    begun = b"\x0b" + adt("A04", "T1", pid("R1")).encode()  # no <FS><CR>
    answer, took = talk(mllp, begun, wait=10)
    assert answer == b""
    assert 0.9 < took < 4
    [ack] = send(mllp, adt("A04", "T2", pid("R1")))
    assert code(ack) == "AA"


@pytest.mark.parametrize("between", [b"", b"\r\n", b"\n"])
def test_frames_may_be_split_anywhere_and_separated_by_line_ends(mllp, facility, between):
    first = b"\x0b" + adt("A04", "F1", pid("R1")).encode() + b"\x1c\r"
    second = b"\x0b" + adt("A04", "F2", pid("R2")).encode() + b"\x1c\r"

    async def dribble() -> list[str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", mllp)
        data = first + between + second
        # Cut inside the first <FS><CR>, and inside the second message's MSH.
        for piece in (data[: len(first) - 1], data[len(first) - 1 : len(first) + 5], data[len(first) + 5 :]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.05)
        acks = []
        for _ in range(2):
            block = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 15)
            acks.append(str(hl7.parse(block[1:-2].decode()).segment("MSA")[2]))
        writer.close()
        return acks

    assert asyncio.run(dribble()) == ["F1", "F2"]
