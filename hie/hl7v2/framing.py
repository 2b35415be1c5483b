"""MLLP framing (<VT> message <FS><CR>), read by hand from a connection.

StreamReader.readuntil stops at its limit and drops the buffer, so a message over the limit
could only be answered by closing the connection while the sender was still writing (which the
sender sees as a reset), and data that never sends <FS><CR> (an HTTP request) was waited on for
ever. Here a message over the limit is read to its end and reported with its first bytes, so the
listener can refuse it with AR; anything that does not begin with <VT> is refused at once; and a
message begun must end within the frame timeout.
"""

import asyncio

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\r"
KEPT_BYTES = 64 * 1024  # of a message over the limit: enough for its MSH, kept in the inbox
_READ_BYTES = 64 * 1024


class NotMllp(Exception):
    """The connection sent something that is not an MLLP frame (such as an HTTP request)."""

    def __init__(self, start: bytes) -> None:
        super().__init__("data without MLLP framing")
        self.start = start


class IncompleteFrame(Exception):
    """The connection ended inside a message."""


class FrameReader:
    """The frames of one connection, one after the other."""

    def __init__(self, reader: asyncio.StreamReader, *, limit: int, timeout: float) -> None:
        self.reader, self.limit, self.timeout = reader, limit, timeout
        self.buffer = bytearray()

    async def _read_more(self, deadline: float | None = None) -> bool:
        """More bytes into the buffer; False at the end of the stream. TimeoutError after the deadline."""
        if deadline is None:
            chunk = await self.reader.read(_READ_BYTES)
        else:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError
            chunk = await asyncio.wait_for(self.reader.read(_READ_BYTES), remaining)
        self.buffer += chunk
        return bool(chunk)

    async def next_frame(self) -> tuple[bytes, int | None] | None:
        """The next message (None at the end of the stream) and, when it was over the limit, its
        size: the bytes returned are then only its first KEPT_BYTES."""
        while True:  # a sender may leave line ends between frames
            del self.buffer[: len(self.buffer) - len(self.buffer.lstrip(b"\r\n"))]
            if self.buffer:
                break
            if not await self._read_more():
                return None
        if self.buffer[:1] != START_BLOCK:
            raise NotMllp(bytes(self.buffer[:16]))
        del self.buffer[:1]
        deadline = asyncio.get_running_loop().time() + self.timeout
        head: bytes | None = None  # set once the message is over the limit
        dropped = 0  # bytes of an oversized message already counted and let go
        searched = 0
        while True:
            end = self.buffer.find(END_BLOCK, searched)
            if end >= 0:
                body = bytes(self.buffer[:end])
                del self.buffer[: end + len(END_BLOCK)]
                size = dropped + len(body)
                if head is None and size <= self.limit:
                    return body, None
                return (head if head is not None else body[:KEPT_BYTES]), size
            if head is None and len(self.buffer) > self.limit:
                head = bytes(self.buffer[:KEPT_BYTES])
            if head is not None:
                # Counted and let go, but for the last byte: it may be the <FS> of a split <FS><CR>.
                dropped += len(self.buffer) - 1
                del self.buffer[:-1]
            searched = max(len(self.buffer) - 1, 0)
            if not await self._read_more(deadline):
                raise IncompleteFrame
