"""Reference app for bench/ingest_http.py: bare Litestar + msgspec, no I/O.

One `POST /api/v1/telemetry/{job_type}/{job_id}` endpoint that decodes the very same msgspec struct the
API uses (`pipeline.ingest.models.TelemetryUpdate`) the way the API does (a strict `msgspec.json.Decoder`
over `await request.body()`), does nothing with it, and answers 202 with a small JSON body, like the
real endpoint. No guards, no path-parameter validation, no stores, no background tasks: the ceiling that
Litestar and the ASGI server reach on this machine, against which the real endpoint is compared.

Served exactly like `sendense api` serves the real app (same server, same options):

    python bench/bare_app.py --server granian --port 28092
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
for path in (str(BENCH_DIR), str(BENCH_DIR.parent)):
    if path not in sys.path:
        sys.path.insert(0, path)

import msgspec  # noqa: E402
from litestar import Litestar, Request, Response, post  # noqa: E402
from litestar.exceptions import ValidationException  # noqa: E402

from pipeline.ingest.models import TelemetryUpdate  # noqa: E402

_decoder = msgspec.json.Decoder(TelemetryUpdate)


@post("/api/v1/telemetry/{job_type:str}/{job_id:str}")
async def update(job_type: str, job_id: str, request: Request) -> Response:
    try:
        _decoder.decode(await request.body())
    except msgspec.ValidationError as exc:
        raise ValidationException(str(exc)) from exc
    return Response({"job_id": job_id, "accepted": True}, status_code=202)


def create_app() -> Litestar:
    return Litestar(route_handlers=[update], openapi_config=None)


_encode = msgspec.json.Encoder().encode


async def _body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def plain_app(scope, receive, send) -> None:
    """`--plain`: the same work as a plain ASGI callable, no framework: the floor under any endpoint here
    (the real API's single updates are answered in front of Litestar's routing, api/fastpath.py)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    _decoder.decode(await _body(receive))
    out = _encode({"job_id": scope["path"].rsplit("/", 1)[-1], "accepted": True})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": out})


def create_plain_app():
    return plain_app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", choices=["granian", "uvicorn"], default="granian")
    parser.add_argument("--port", type=int, default=28092)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--plain", action="store_true", help="a plain ASGI callable instead of Litestar")
    args = parser.parse_args()
    factory = "bare_app:create_plain_app" if args.plain else "bare_app:create_app"
    # The same calls as pipeline/cli.py cmd_api, so both apps run under identical server settings.
    if args.server == "granian":
        from granian import Granian
        from granian.constants import Interfaces

        Granian(
            factory,
            address=args.host,
            port=args.port,
            interface=Interfaces.ASGI,
            factory=True,
            log_access=False,
            working_dir=BENCH_DIR,
            workers=args.workers,
        ).serve()
    else:
        import uvicorn

        uvicorn.run(
            factory,
            host=args.host,
            port=args.port,
            factory=True,
            log_level="warning",
            access_log=False,
            app_dir=str(BENCH_DIR),
            workers=args.workers if args.workers > 1 else None,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
