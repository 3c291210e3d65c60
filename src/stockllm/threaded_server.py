"""An ASGI app served by uvicorn from a thread of this process, on a free port by default.

Tests, benchmarks and screenshots need a real server they can start and stop inside one process: the
exchange (:class:`stockllm.trading.server.Background`) and the web app (:class:`stockllm.app.ui.Background`)
both use this one.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .errors import StockLLMError

START_TIMEOUT = 60.0  # seconds; a loaded 2-core machine can take a while to import and bind


class ThreadedServer:
    """``with ThreadedServer(app) as url:`` serves ``app`` at ``url`` (``http://HOST:PORT``) until the block ends."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, what: str = "the server", name: str | None = None):
        import uvicorn

        self.what = what
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True, name=name)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise StockLLMError(f"{self.what}'s thread did not start")
            time.sleep(0.01)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
