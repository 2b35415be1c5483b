"""The MLLP listener: an asyncio TCP server (optionally TLS, with client certificates) that
frames, stores and acknowledges.

Framed messages from every connection wait in one line; a database thread (or a few) takes all
that are waiting (up to MAX_BATCH) and hand them to services.receive_messages, which stores them
in one transaction (a group commit). Each ACK is written back only after that commit. Each
message carries what its connection proves (address, verified client certificate): the services
decide whether that is the member MSH-4 names. Bad framing closes that connection with a log
line; the listener keeps serving every other one.
"""

import asyncio
import contextlib
import hashlib
import logging
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections, connections

from hie.hl7v2.framing import END_BLOCK, START_BLOCK, FrameReader, IncompleteFrame, NotMllp
from hie.hl7v2.services import Framed, Peer, receive_messages

logger = logging.getLogger(__name__)
MAX_BATCH = 200  # messages stored in one transaction at most
HTTP_METHODS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ")
# What an HTTP client that reached the MLLP port is told before the connection closes.
_HTTP_REASON = b"This port speaks HL7 v2 over MLLP, not HTTP.\r\n"
HTTP_REFUSAL = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_HTTP_REASON), _HTTP_REASON)
)


def tls_context(*, certificate: str, key: str | None, client_ca: str | None = None,
                require_client_certificate: bool = False) -> ssl.SSLContext:  # fmt: skip
    """The listener's TLS: its own certificate and, with a client CA, the members' certificates.

    A client certificate is verified against the CA during the handshake (one the CA did not sign
    fails it); which member it speaks for is the member that registered its fingerprint. Without
    require_client_certificate a client may come without one, and is then known by its address.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, key)
    if client_ca:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_certificate else ssl.CERT_OPTIONAL
    elif require_client_certificate:
        raise ValueError("requiring client certificates needs the CA that signs them")
    return context


def peer_of(writer: asyncio.StreamWriter) -> Peer:
    """The connection's address and the SHA-256 fingerprint of its verified client certificate."""
    address = writer.get_extra_info("peername") or ("", 0)
    tls = writer.get_extra_info("ssl_object")
    certificate = tls.getpeercert(binary_form=True) if tls is not None else None
    fingerprint = hashlib.sha256(certificate).hexdigest() if certificate else ""
    return Peer(host=address[0], port=address[1], certificate_sha256=fingerprint)


def _receive(batch: list[Framed], *, again: bool = True) -> list[bytes | Exception | None]:
    """The ACK of each message (None: close its connection; an exception: it could not be stored)."""
    # Each thread keeps its connection between batches; a broken or expired one is replaced here
    # (the health check asks the database at most once per DB_HEALTH_CHECK_SECONDS, and always
    # after a failure).
    close_old_connections()
    try:
        return receive_messages(batch)
    except Exception as error:
        if len(batch) == 1 and not again:
            return [error]
        if len(batch) > 1:
            # One message that breaks the batch must not keep the others from being stored.
            logger.exception("a batch of HL7 messages failed; storing them one at a time",
                             extra={"messages": len(batch)})  # fmt: skip
    return [_receive([item], again=False)[0] for item in batch]


class Listener:
    def __init__(self, host: str, port: int, *, tls: ssl.SSLContext | None = None, threads: int = 1) -> None:
        self.host, self.port, self.tls, self.threads = host, port, tls, threads
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mllp")
        self.server: asyncio.base_events.Server | None = None
        self.waiting: asyncio.Queue | None = None
        self.runners: list[asyncio.Task] = []

    async def submit(self, framed: Framed) -> bytes | None:
        """The message's ACK, once it is committed with the others of its batch."""
        answered = asyncio.get_running_loop().create_future()
        await self.waiting.put((framed, answered))
        return await answered

    async def run_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.waiting.get()]
            # Let the loop read what has already reached the sockets first: the batch grows, at
            # no cost in latency, and one commit serves more messages.
            await asyncio.sleep(0)
            while len(batch) < MAX_BATCH and not self.waiting.empty():
                batch.append(self.waiting.get_nowait())
            try:
                acks = await loop.run_in_executor(self.executor, _receive, [framed for framed, _ in batch])
            except Exception as error:  # e.g. the database is down: nothing is ACKed, the senders send again
                logger.exception("HL7 messages could not be stored", extra={"messages": len(batch)})
                for _, answered in batch:
                    if not answered.done():
                        answered.set_exception(error)
                continue
            for (_, answered), ack in zip(batch, acks, strict=True):
                if answered.done():
                    continue
                if isinstance(ack, Exception):
                    answered.set_exception(ack)  # no ACK: that connection closes and its sender sends again
                else:
                    answered.set_result(ack)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_of(writer)
        log = {"peer": str(peer)}
        frames = FrameReader(reader, limit=settings.HL7_MAX_MESSAGE_BYTES, timeout=settings.HL7_FRAME_TIMEOUT_SECONDS)
        try:
            while True:
                try:
                    frame = await frames.next_frame()
                except NotMllp as refused:
                    logger.warning("data without MLLP framing; connection closed", extra=log)
                    if refused.start.startswith(HTTP_METHODS):
                        writer.write(HTTP_REFUSAL)
                    await self._let_go(reader, writer)
                    break
                except IncompleteFrame:
                    logger.warning("connection closed inside a message", extra=log)
                    break
                except TimeoutError:
                    logger.warning("message not completed within HL7_FRAME_TIMEOUT_SECONDS; connection closed",
                                   extra=log)  # fmt: skip
                    break
                if frame is None:
                    break
                raw, size = frame
                if size is not None:
                    logger.warning("message larger than HL7_MAX_MESSAGE_BYTES; refused",
                                   extra={**log, "bytes": size})  # fmt: skip
                ack = await self.submit(Framed(raw=raw, peer=peer, oversize=size))
                if ack is None:
                    await self._let_go(reader, writer)
                    break
                writer.write(START_BLOCK + ack + END_BLOCK)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            logger.exception("MLLP connection failed", extra=log)
        finally:
            writer.close()

    @staticmethod
    async def _let_go(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Before closing: send what was written, and read what already came, so that the close is
        an orderly one (closing with unread bytes makes the kernel answer with a reset)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.drain(), 1)
            await asyncio.wait_for(reader.read(1024 * 1024), 0.2)

    async def start(self) -> None:
        self.waiting = asyncio.Queue()
        self.runners = [asyncio.create_task(self.run_batches()) for _ in range(self.threads)]
        self.server = await asyncio.start_server(self.handle, self.host, self.port, ssl=self.tls)
        logger.info("MLLP listener started", extra={"host": self.host, "port": self.bound_port,
                                                    "tls": self.tls is not None})  # fmt: skip

    @property
    def bound_port(self) -> int:
        return self.server.sockets[0].getsockname()[1] if self.server else self.port

    async def serve_forever(self) -> None:
        await self.start()
        async with self.server:
            await self.server.serve_forever()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for runner in self.runners:
            runner.cancel()
        await asyncio.gather(*self.runners, return_exceptions=True)
        # Each worker thread holds its own database connection: close them all, one per thread
        # (the barrier keeps a thread from taking two of these jobs).
        barrier = threading.Barrier(self.threads)

        def close_connection() -> None:
            connections.close_all()
            barrier.wait(timeout=10)

        jobs = [self.executor.submit(close_connection) for _ in range(self.threads)]
        await asyncio.gather(*(asyncio.wrap_future(job) for job in jobs), return_exceptions=True)
        self.executor.shutdown(wait=True)
