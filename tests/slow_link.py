"""A slow uplink between a browser and a test server, on loopback only.

Chromium's network emulation (CDP ``Network.emulateNetworkConditions``) does
not slow WebSocket frames, and the dashboard uploads over its websocket: a
test that "throttled" that way uploaded at full speed and only looked slow.
:class:`SlowUplink` is a TCP proxy instead. It listens on ``[::1]`` at the
server's own port number (so the page's origin, ``[::1]:port``, is one the
server accepts for its websocket) and forwards to ``127.0.0.1:port``; what the
browser sends passes at most ``rate`` bytes per second, what the server sends
back is not slowed. ``rate = None`` lifts the limit at once, mid-upload.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

#: Bytes forwarded per step of the slowed direction.
STEP = 4096


class SlowUplink:
    """Forward ``127.0.0.1:port`` to ``127.0.0.1:target``, browser-to-server at ``rate`` bytes/s.

    The port is taken at once (so a server can be told the proxy's origin
    before it starts); :meth:`start` takes the target port.
    """

    def __init__(self, rate: int | None) -> None:
        self.rate = rate
        self.target = 0
        self.forwarded = 0  # bytes that went browser-to-server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="slow-uplink", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, target: int) -> SlowUplink:
        self.target = target
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._connection, sock=self._listener), self._loop).result(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():  # the connections still open
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _connection(self, browser_reader: asyncio.StreamReader, browser_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            browser_writer.close()
            return
        try:
            await asyncio.gather(self._pipe(browser_reader, server_writer, slowed=True),
                                 self._pipe(server_reader, browser_writer, slowed=False), return_exceptions=True)
        except asyncio.CancelledError:  # stop(): the connection just ends
            pass

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slowed: bool) -> None:
        try:
            while data := await reader.read(STEP if slowed else 65536):
                if slowed:
                    started = time.monotonic()
                    rate = self.rate
                    if rate:
                        await asyncio.sleep(max(0.0, len(data) / rate - (time.monotonic() - started)))
                    self.forwarded += len(data)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
