"""The body limit in front of MLflow's scoring app (`covid-xray serve`), driven as uvicorn drives an ASGI app."""

import asyncio
import json

from covid_xray.serving.scoring_app import BodyLimit

LIMIT = 1000


def echo_app(seen: list[bytes]):
    """An app that reads the whole body, as MLflow's /invocations does, and answers 200 with its length."""

    async def app(scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})

    return app


def call(chunks: list[bytes], declared: int | None = None) -> tuple[int, bytes, list[bytes], int]:
    """(status, response body, bodies the app saw, chunks left unread) for a POST sent in `chunks`."""
    seen: list[bytes] = []
    sent: list[dict] = []
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    headers = [] if declared is None else [(b"content-length", str(declared).encode())]

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/invocations", "headers": headers}
    asyncio.run(BodyLimit(echo_app(seen), LIMIT)(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"), seen, len(queue)


def test_a_body_within_the_limit_reaches_the_app_whole_in_one_piece_or_many():
    assert call([b"x" * LIMIT], declared=LIMIT)[:3] == (200, b"1000", [b"x" * LIMIT])
    assert call([b"ab", b"cd", b"ef"])[:3] == (200, b"6", [b"abcdef"])


def test_a_declared_length_over_the_limit_is_refused_with_the_reason_before_the_app_runs():
    status, answer, seen, unread = call([b"x" * 600, b"x" * 600], declared=1200)
    assert status == 413 and seen == [] and unread == 0  # the body was drained: the client reads the 413
    reason = json.loads(answer)
    assert reason["error_code"] == "REQUEST_TOO_LARGE" and "limit" in reason["message"]
    assert "--max-body-mb" in reason["message"]


def test_a_chunked_upload_without_a_length_is_stopped_once_it_passes_the_limit():
    status, answer, seen, unread = call([b"x" * 400] * 5)
    assert status == 413 and seen == [] and unread == 0
    assert "request body of 0.0 MB" in json.loads(answer)["message"]  # 2,000 bytes


def test_other_scopes_pass_through():
    seen: list[str] = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    asyncio.run(BodyLimit(app, LIMIT)({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]
