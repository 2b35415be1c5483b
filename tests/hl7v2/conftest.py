"""A live MLLP listener on a free port, and a python-hl7 client that talks to it."""

import asyncio
import ssl
import threading

import hl7
import pytest
from hl7.mllp import open_hl7_connection

from hie.hl7v2.listener import Listener
from hie.orgs.services import allow_hl7_source, create_organization


@pytest.fixture
def start_listener(audit_rows_flushable):
    """Start listeners (each serving in a thread of its own, on the test database); all stop after the test."""
    running = []

    def start(tls: ssl.SSLContext | None = None) -> Listener:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        listener = Listener("127.0.0.1", 0, tls=tls, threads=2)
        asyncio.run_coroutine_threadsafe(listener.start(), loop).result(10)
        running.append((listener, loop, thread))
        return listener

    yield start
    for listener, loop, thread in running:
        asyncio.run_coroutine_threadsafe(listener.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture
def mllp_listener(start_listener):
    """A plain-TCP listener."""
    return start_listener()


@pytest.fixture
def mllp(mllp_listener):
    """The port of a listening MLLP server."""
    return mllp_listener.bound_port


def send(port: int, *messages: str | bytes, tls: ssl.SSLContext | None = None) -> list[hl7.Message | None]:
    """Send messages one after the other on one connection; the ACK of each (None: connection closed)."""

    async def exchange() -> list[hl7.Message | None]:
        reader, writer = await open_hl7_connection("127.0.0.1", port, ssl=tls)
        acks = []
        for message in messages:
            if isinstance(message, bytes):
                writer.write(message)  # raw bytes exactly as given (framing included or not)
            else:
                writer.writemessage(hl7.parse(message))
            await writer.drain()
            try:
                acks.append(await asyncio.wait_for(reader.readmessage(), 15))
            except (asyncio.IncompleteReadError, ConnectionError):
                acks.append(None)
                break
        writer.close()
        return acks

    return asyncio.run(exchange())


def hl7_member(name: str, oid: str, facility: str, *, address: str | None = "127.0.0.1"):
    """A member sending HL7 as `facility`, from `address` (None: from nowhere yet)."""
    member = create_organization(name=name, identifier_systems=[f"urn:oid:{oid}"], hl7_facility=facility)
    if address:
        allow_hl7_source(organization=member, network=address)
    return member


@pytest.fixture
def facility():
    """A member sending HL7 from facility RIVERSIDE on this machine (plain MLLP from 127.0.0.1),
    identifiers under urn:oid:2.16.840.1.113883.3.7001.1."""
    return hl7_member("Riverside", "2.16.840.1.113883.3.7001.1", "RIVERSIDE")


def adt(event: str, control_id: str, pid: str, *, facility: str = "RIVERSIDE", version: str = "2.5.1",
        extra: str = "") -> str:  # fmt: skip
    """An ADT message with the given PID fields (after PID|1|)."""
    segments = [f"MSH|^~\\&|EPIC|{facility}|HIE|HIE|20261125120000||ADT^{event}^ADT_{event}|{control_id}|P|{version}",
                f"EVN|{event}|20261125120000", f"PID|1|{pid}"]  # fmt: skip
    if extra:
        segments.append(extra)
    return "\r".join(segments) + "\r"
