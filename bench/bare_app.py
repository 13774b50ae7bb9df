"""The physical limit of this stack: a bare Starlette app on the gateway's server settings.

``POST /v1/jobs/images`` only parses the JSON body and answers 202 with a body the size of
the gateway's; ``GET /v1/jobs/{id}`` answers 200 with a body the size of the gateway's. No
auth, no store, no validation. Served by uvicorn with the same options ``backserv serve``
uses (one worker, ``loop="auto"``, ``http="auto"``, no access log).

    python -m bench.bare_app --port 8001 --post-bytes 443 --get-bytes 1068
"""

from __future__ import annotations

import argparse

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def _body(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes (at least 10)."""
    filler = max(0, size - len(b'{"pad":""}'))
    return b'{"pad":"' + b"x" * filler + b'"}'


def create_app(post_bytes: int, get_bytes: int) -> Starlette:
    post_body = _body(post_bytes)
    get_body = _body(get_bytes)

    async def create(request: Request) -> Response:
        orjson.loads(await request.body())
        return Response(post_body, status_code=202, media_type="application/json")

    async def get(request: Request) -> Response:
        return Response(get_body, status_code=200, media_type="application/json")

    return Starlette(
        routes=[
            Route("/v1/jobs/images", create, methods=["POST"]),
            Route("/v1/jobs/{job_id}", get, methods=["GET"]),
            Route("/healthz", get, methods=["GET"]),
        ]
    )


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--post-bytes", type=int, default=443)
    parser.add_argument("--get-bytes", type=int, default=1068)
    args = parser.parse_args()
    config = uvicorn.Config(  # the same options as gateway.cli._serve
        create_app(args.post_bytes, args.get_bytes),
        host=args.host,
        port=args.port,
        loop="auto",
        http="auto",
        lifespan="on",
        log_level="info",
        log_config=None,
        timeout_graceful_shutdown=15,
        access_log=False,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
