"""The HTTP side of organisation mode: each person's feed at their secret URL, from the database.

Every replica answers from the same row (daemon.people.People.feed_by_token), so a calendar app polling
any of them gets identical bytes, ETag and Last-Modified, and a conditional request made against one
replica's answer is valid at every other. A token that matches nobody is Starlette's own 404, the same as a
path that does not exist; the lookup is by the token's SHA-256, so its time does not depend on how much
of a real token was guessed.
"""

from __future__ import annotations

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from daemon.feed_cache import DEFAULT_MAX_AGE
from daemon.org_metrics import CONTENT_TYPE, render_metrics
from daemon.people import People
from daemon.web import FEED_MEDIA_TYPE, AccessLog, not_modified


def build_org_app(engine: Engine, *, max_age: int = DEFAULT_MAX_AGE) -> Starlette:
    people = People(engine)
    cache_control = f"private, max-age={max_age}"

    async def feed(request: Request) -> Response:
        snap = await run_in_threadpool(people.feed_by_token, request.path_params["token"])
        if snap is None:
            return PlainTextResponse("Not Found", status_code=404)
        validators = {"ETag": snap.etag, "Cache-Control": cache_control}
        if not_modified(request.headers.get("if-none-match"), request.headers.get("if-modified-since"), snap):
            return Response(status_code=304, headers=validators)
        headers = {
            **validators,
            "Last-Modified": snap.last_modified_http,
            "Content-Disposition": 'inline; filename="circleback.ics"',
            "X-Content-Type-Options": "nosniff",
        }
        return Response(snap.body, media_type=FEED_MEDIA_TYPE, headers=headers)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n", headers={"Cache-Control": "no-store"})

    async def metrics(request: Request) -> Response:
        body = await run_in_threadpool(render_metrics, engine)
        return Response(body, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})

    routes = [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/feed/{token}.ics", feed, methods=["GET", "HEAD"]),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(AccessLog)])
