"""The app `covid-xray serve` runs: MLflow's own scoring server (`mlflow models serve`'s FastAPI app, the same routes
and answers), behind a limit on the request body.

MLflow's server reads any body whole into memory: a 50 MB upload was decoded and answered 200 with a refused row. Here
a body over the limit is answered 413 with the limit in the message before the model sees it; it is checked on the
declared Content-Length and on the bytes actually received (a chunked upload has no length). Starlette and uvicorn
have no such setting, hence this small ASGI wrapper.

uvicorn loads this file as the top-level module `scoring_app` (`--app-dir`, see `covid_xray.cli.serve`) in each worker,
and it imports nothing of the project: loading the model then imports the library code logged with it (its
`code_paths`), as under `mlflow models serve`, so a model runs the code it was evaluated with, not this checkout's. The
model path comes from COVID_XRAY_MODEL_PATH (a serving image sets it, infra/serving.Dockerfile), else from the
environment MLflow's `scoring_server.get_cmd` prepares; the limit from COVID_XRAY_MAX_BODY_MB.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mlflow.pyfunc import scoring_server

MAX_BODY_ENV = "COVID_XRAY_MAX_BODY_MB"
MODEL_PATH_ENV = "COVID_XRAY_MODEL_PATH"
DEFAULT_MAX_BODY_MB = 32  # a 16-bit 3000x3000 PNG is about 18 MB, 24 MB as base64 in JSON
DRAIN_LIMIT = 2**30  # past this, a refused body is not read to its end: the connection is closed on the sender

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: a request whose body is over `max_bytes` gets 413 and a JSON reason (MLflow's error shape).

    The body is read here first, up to the limit, and handed to the app whole: /invocations reads it whole anyway."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._drain(receive)
            await self._refuse(send, int(declared))
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: the app sees it as it would have
                first = message
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:  # a chunked upload declares no length
                size += await self._drain(receive) if message.get("more_body") else 0
                await self._refuse(send, size)
                return
            if not message.get("more_body"):
                first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break
        handed = False

        async def replay() -> Message:
            nonlocal handed
            if not handed:
                handed = True
                return first
            return await receive()

        await self.app(scope, replay, send)

    async def _drain(self, receive: Receive) -> int:
        """Read and drop the rest of the body (up to DRAIN_LIMIT): a client still sending it would otherwise see the
        connection reset instead of the 413. Returns the bytes dropped."""
        dropped = 0
        while dropped < DRAIN_LIMIT:
            message = await receive()
            dropped += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        return dropped

    async def _refuse(self, send: Send, size: int) -> None:
        message = (
            f"request body of {size / 2**20:.1f} MB is over this server's limit of {self.max_bytes / 2**20:.0f} MB: "
            f"send fewer or smaller images per request, or start the server with a higher --max-body-mb"
        )
        body = json.dumps({"error_code": "REQUEST_TOO_LARGE", "message": message}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def limited(app: ASGIApp, max_mb: float) -> BodyLimit:
    return BodyLimit(app, int(max_mb * 2**20))


def build() -> BodyLimit:
    """The scoring app for the model COVID_XRAY_MODEL_PATH or MLflow's `get_cmd` environment names, behind the
    configured body limit."""
    path = os.environ.get(MODEL_PATH_ENV) or os.environ[scoring_server._SERVER_MODEL_PATH]
    model = scoring_server.load_model_with_mlflow_config(path)
    return limited(scoring_server.init(model), float(os.environ.get(MAX_BODY_ENV, DEFAULT_MAX_BODY_MB)))


def __getattr__(name: str) -> BodyLimit:
    """`app`, built when uvicorn asks for it (importing this module alone loads no model)."""
    if name == "app":
        return build()
    raise AttributeError(name)
