"""The HTTP side of organisation mode: each person's feed at their secret URL, from the database.

Every replica answers from the same row (daemon.people.People.feed_by_token), so a calendar app polling
any of them gets identical bytes, ETag and Last-Modified, and a conditional request made against one
replica's answer is valid at every other. A token that matches nobody is Starlette's own 404, the same as a
path that does not exist; the lookup is by the token's SHA-256, so its time does not depend on how much
of a real token was guessed.

`/readyz` (unauthenticated) answers 200 or 503 with counts of people by state, never who they are;
`/feed/TOKEN/status` gives the person holding that secret address their own cycles and calendars
(daemon.org_status).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from daemon.feed_cache import DEFAULT_MAX_AGE
from daemon.org_metrics import CONTENT_TYPE, render_metrics
from daemon.org_status import owner_by_token, person_status_json, readiness
from daemon.people import People
from daemon.web import FEED_MEDIA_TYPE, AccessLog, not_modified

_NO_STORE = {"Cache-Control": "no-store"}


def build_org_app(
    engine: Engine, *, max_age: int = DEFAULT_MAX_AGE, period: timedelta = timedelta(minutes=15)
) -> Starlette:
    """`period`: how often every person's cycle runs (`schedule.sync_every`), to tell late cycles."""
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

    async def readyz(request: Request) -> Response:
        ready = await run_in_threadpool(readiness, engine, period)
        return JSONResponse(ready.as_json(), status_code=200 if ready.ready else 503, headers=_NO_STORE)

    async def status(request: Request) -> Response:
        email = await run_in_threadpool(owner_by_token, engine, request.path_params["token"])
        if email is None:
            return PlainTextResponse("Not Found", status_code=404)
        body = await run_in_threadpool(person_status_json, engine, email, period)
        return JSONResponse(body, headers={**_NO_STORE, "X-Content-Type-Options": "nosniff"})

    async def metrics(request: Request) -> Response:
        body = await run_in_threadpool(render_metrics, engine)
        return Response(body, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})

    routes = [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/feed/{token}.ics", feed, methods=["GET", "HEAD"]),
        Route("/feed/{token}/status", status, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(AccessLog)])
