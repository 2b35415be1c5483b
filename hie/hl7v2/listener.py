"""The MLLP listener: an asyncio TCP server (optionally TLS) that frames, stores and acknowledges.

Framed messages from every connection wait in one line; a database thread (or a few) takes all
that are waiting (up to MAX_BATCH) and hand them to services.receive_messages, which stores them
in one transaction (a group commit). Each ACK is written back only after that commit. Bad framing
closes that connection with a log line; the listener keeps serving every other one.
"""

import asyncio
import logging
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor

from django.db import close_old_connections, connections
from hl7.mllp import InvalidBlockError, start_hl7_server

from hie.hl7v2.services import receive_messages

logger = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_BATCH = 200  # messages stored in one transaction at most


def _receive(batch: list[tuple[bytes, str]], *, again: bool = True) -> list[bytes | Exception | None]:
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

    async def submit(self, raw: bytes, peer: str) -> bytes | None:
        """The message's ACK, once it is committed with the others of its batch."""
        answered = asyncio.get_running_loop().create_future()
        await self.waiting.put((raw, peer, answered))
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
                acks = await loop.run_in_executor(self.executor, _receive, [(raw, peer) for raw, peer, _ in batch])
            except Exception as error:  # e.g. the database is down: nothing is ACKed, the senders send again
                logger.exception("HL7 messages could not be stored", extra={"messages": len(batch)})
                for _, _, answered in batch:
                    if not answered.done():
                        answered.set_exception(error)
                continue
            for (_, _, answered), ack in zip(batch, acks, strict=True):
                if answered.done():
                    continue
                if isinstance(ack, Exception):
                    answered.set_exception(ack)  # no ACK: that connection closes and its sender sends again
                else:
                    answered.set_result(ack)

    async def handle(self, reader, writer) -> None:
        peer = writer.get_extra_info("peername")
        peer_text = f"{peer[0]}:{peer[1]}" if peer else ""
        try:
            while True:
                try:
                    block = await reader.readblock()
                except asyncio.IncompleteReadError as end:
                    if end.partial.strip():
                        logger.warning("connection closed inside a message", extra={"peer": peer_text})
                    break
                except InvalidBlockError:
                    logger.warning("data without MLLP framing; connection closed", extra={"peer": peer_text})
                    break
                except ValueError:
                    logger.warning("message larger than the limit; connection closed", extra={"peer": peer_text})
                    break
                ack = await self.submit(bytes(block), peer_text)
                if ack is None:
                    break
                writer.writeblock(ack)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            logger.exception("MLLP connection failed", extra={"peer": peer_text})
        finally:
            writer.close()

    async def start(self) -> None:
        self.waiting = asyncio.Queue()
        self.runners = [asyncio.create_task(self.run_batches()) for _ in range(self.threads)]
        self.server = await start_hl7_server(self.handle, self.host, self.port, limit=MAX_MESSAGE_BYTES, ssl=self.tls)
        logger.info("MLLP listener started", extra={"host": self.host, "port": self.bound_port})

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
