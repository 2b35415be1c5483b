"""The MLLP listener: an asyncio TCP server (optionally TLS) that frames, stores and acknowledges.

Each framed message is handed to services.receive_message in a worker thread (the database
work is synchronous); its ACK is written back only after the message is committed. Bad framing
closes that connection with a log line; the listener keeps serving every other one.
"""

import asyncio
import logging
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor

from django.db import close_old_connections, connections
from hl7.mllp import InvalidBlockError, start_hl7_server

from hie.hl7v2.services import receive_message

logger = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def _receive(raw: bytes, peer: str) -> bytes | None:
    close_old_connections()
    try:
        return receive_message(raw, peer)
    finally:
        close_old_connections()


class Listener:
    def __init__(self, host: str, port: int, *, tls: ssl.SSLContext | None = None, threads: int = 8) -> None:
        self.host, self.port, self.tls, self.threads = host, port, tls, threads
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mllp")
        self.server: asyncio.base_events.Server | None = None

    async def handle(self, reader, writer) -> None:
        peer = writer.get_extra_info("peername")
        peer_text = f"{peer[0]}:{peer[1]}" if peer else ""
        loop = asyncio.get_running_loop()
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
                ack = await loop.run_in_executor(self.executor, _receive, bytes(block), peer_text)
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
        # Each worker thread holds its own database connection: close them all, one per thread
        # (the barrier keeps a thread from taking two of these jobs).
        barrier = threading.Barrier(self.threads)

        def close_connection() -> None:
            connections.close_all()
            barrier.wait(timeout=10)

        jobs = [self.executor.submit(close_connection) for _ in range(self.threads)]
        await asyncio.gather(*(asyncio.wrap_future(job) for job in jobs), return_exceptions=True)
        self.executor.shutdown(wait=True)
