"""The rating web app (Starlette): sign-in by token, one case at a time, ratings into SQLite.

Routes
------
``GET /``, ``GET /admin``
    The reader page and the admin progress page (static HTML + vanilla JS from ``page/``).
``POST /api/login`` ``{"token"}``
    Sets an HttpOnly, SameSite=Strict cookie holding the token; API calls may also send
    ``Authorization: Bearer <token>``.
``GET /api/me``, ``GET /api/next``
    The reader's progress and the study's display settings; their next case (opaque id, panels,
    slice counts, the lesion's slice and marker box per panel, whether it is a practice case).
``GET /api/image/{item}/{panel}/{view}/{index}``
    One PNG (16-bit HU), found through the item's database record; ids outside the study give 404.
``POST /api/ratings`` ``{"item_id", "answer", "confidence", "seconds", "comment", "slices_visited",
"window_width", "window_level", "zoom"}``
    Stored and committed before the reply; a repeat is answered with the first rating (idempotent).
    ``answer`` ``not_visible`` takes ``confidence`` null. A practice item's reply carries its truth.
``GET /api/admin/progress``
    Admin token only: per-reader progress, no answers.

The answer key is never read by the server.
"""
from __future__ import annotations

import math
import re
from importlib.resources import files
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reader_study.store import ANSWERS, NOT_VISIBLE, Store

__all__ = ["create_app", "COOKIE"]

COOKIE = "rs_token"
_PAGES = {"index.html": "text/html; charset=utf-8", "admin.html": "text/html; charset=utf-8",
          "app.js": "text/javascript; charset=utf-8", "admin.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}
_SECURITY = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
                               "frame-ancestors 'none'",
}
_ITEM_ID = re.compile(r"^[0-9a-f]{16}$")
_MAX_COMMENT = 2000  # characters


def _optional_number(body: dict, name: str, *, integer: bool = False, positive: bool = False,
                     minimum: float | None = None, maximum: float | None = None
                     ) -> tuple[float | int | None, str | None]:
    """``(value, None)`` for a valid optional number in ``body``, else ``(None, error message)``."""
    value = body.get(name)
    if value is None:
        return None, None
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (integer and not float(value).is_integer()):
        return None, f"{name} must be {kind}"
    if (positive and value <= 0) or (minimum is not None and value < minimum) \
            or (maximum is not None and value > maximum):
        low = "> 0" if positive else f">= {minimum:g}" if minimum is not None else None
        bounds = " and ".join(b for b in (low, None if maximum is None else f"<= {maximum:g}") if b)
        return None, f"{name} must be {kind} {bounds}"
    return (int(value) if integer else float(value)), None


def _page_bytes() -> dict[str, bytes]:
    # Read once at start-up: the names are fixed, so no request path ever reaches the file system.
    root = files("reader_study") / "page"
    return {name: (root / name).read_bytes() for name in _PAGES}


def _json(data, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers={**_SECURITY, "Cache-Control": "no-store"})


def _error(message: str, status: int) -> JSONResponse:
    return _json({"error": message}, status)


def create_app(study: str | Path) -> Starlette:
    """Build the app for one study folder (opens or creates ``ratings.sqlite``).

    Parameters
    ----------
    study : path
        A folder written by :func:`reader_study.build.build_study`.
    """
    store = Store(study)
    pages = _page_bytes()
    answers = ANSWERS[store.design]

    def token_of(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip()
        return request.cookies.get(COOKIE)

    def reader_of(request: Request, role: str = "reader") -> dict | None:
        user = store.authenticate(token_of(request))
        return user if user is not None and user["role"] == role else None

    def denied(request: Request, role: str = "reader") -> JSONResponse:
        # 401: no valid token at all; 403: a valid token of the other role.
        if store.authenticate(token_of(request)) is None:
            return _error("sign in with your reader token", 401)
        return _error(f"this page needs a {role} token", 403)

    async def page(request: Request) -> Response:
        name = "admin.html" if request.url.path == "/admin" else "index.html"
        return Response(pages[name], media_type=_PAGES[name], headers=_SECURITY)

    async def no_icon(request: Request) -> Response:
        # Browsers ask for it on their own; an empty answer keeps their console free of 404s.
        return Response(status_code=204, headers=_SECURITY)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _PAGES or name.endswith(".html"):
            return _error("not found", 404)
        return Response(pages[name], media_type=_PAGES[name], headers=_SECURITY)

    async def login(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _error("send JSON {\"token\": ...}", 400)
        token = body.get("token") if isinstance(body, dict) else None
        user = store.authenticate(token if isinstance(token, str) else None)
        if user is None:
            return _error("unknown token", 401)
        response = _json({"name": user["name"], "role": user["role"], "design": store.design})
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")
        return response

    async def logout(request: Request) -> Response:
        response = _json({"signed_out": True})
        response.delete_cookie(COOKIE, path="/")
        return response

    async def me(request: Request) -> Response:
        user = store.authenticate(token_of(request))
        if user is None:
            return _error("sign in with your reader token", 401)
        data = {"name": user["name"], "role": user["role"], "design": store.design}
        if user["role"] == "reader":
            data["rated"], data["total"] = store.progress(user["reader_id"])
            data["display"] = store.display
        return _json(data)

    async def next_item(request: Request) -> Response:
        user = reader_of(request)
        if user is None:
            return denied(request)
        item = store.next_item(user["reader_id"])
        rated, total = store.progress(user["reader_id"])
        practiced, practice_total = store.practice_progress(user["reader_id"])
        return _json({"done": item is None, "item": item, "rated": rated, "total": total,
                      "practice": {"done": practiced, "total": practice_total}})

    async def image(request: Request) -> Response:
        user = reader_of(request)
        if user is None:
            return denied(request)
        item_id, panel, view = (request.path_params[k] for k in ("item", "panel", "view"))
        try:
            index = int(request.path_params["index"])
        except ValueError:
            return _error("not found", 404)
        if not _ITEM_ID.match(item_id) or not store.is_assigned(user["reader_id"], item_id):
            return _error("not found", 404)
        path = store.image_path(item_id, panel, view, index)
        if path is None:
            return _error("not found", 404)
        # Bytes only: no file name, dates or ETag that could tell one source from another.
        return Response(path.read_bytes(), media_type="image/png",
                        headers={**_SECURITY, "Cache-Control": "private, max-age=3600"})

    async def rate(request: Request) -> Response:
        user = reader_of(request)
        if user is None:
            return denied(request)
        if not request.headers.get("content-type", "").startswith("application/json"):
            return _error("send the rating as JSON", 415)
        try:
            body = await request.json()
        except ValueError:
            return _error("the rating is not valid JSON", 400)
        if not isinstance(body, dict):
            return _error("the rating must be a JSON object", 400)
        item_id, answer, confidence = body.get("item_id"), body.get("answer"), body.get("confidence")
        seconds = body.get("seconds")
        if not isinstance(item_id, str) or not _ITEM_ID.match(item_id) or not store.is_assigned(user["reader_id"], item_id):
            return _error("unknown case", 404)
        if answer not in answers:
            return _error(f"answer must be one of {', '.join(answers)}", 422)
        if answer == NOT_VISIBLE:
            if confidence is not None:
                return _error("a 'not_visible' answer takes no confidence (send null)", 422)
        elif isinstance(confidence, bool) or not isinstance(confidence, int) or not 1 <= confidence <= 5:
            return _error("confidence must be a whole number from 1 to 5", 422)
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                    or not math.isfinite(seconds) or seconds < 0):
            return _error("seconds must be a non-negative number", 422)
        comment = body.get("comment")
        if comment is not None and not isinstance(comment, str):
            return _error("comment must be text", 422)
        comment = (comment or "").strip() or None
        if comment is not None and len(comment) > _MAX_COMMENT:
            return _error(f"comment must have at most {_MAX_COMMENT} characters", 422)
        extras = {"comment": comment}
        for name, rule in (("slices_visited", {"integer": True, "minimum": 0, "maximum": 100000}),
                           ("window_width", {"positive": True, "maximum": 100000}),
                           ("window_level", {"minimum": -100000, "maximum": 100000}),
                           ("zoom", {"positive": True, "maximum": 1000})):
            extras[name], problem = _optional_number(body, name, **rule)
            if problem:
                return _error(problem, 422)
        created, stored = store.save_rating(user["reader_id"], item_id, answer, confidence,
                                            None if seconds is None else round(float(seconds), 3), **extras)
        rated, total = store.progress(user["reader_id"])
        return _json({"stored": created, "duplicate": not created, "rating": stored, "rated": rated, "total": total},
                     201 if created else 200)

    async def admin_progress(request: Request) -> Response:
        if reader_of(request, "admin") is None:
            return denied(request, "admin")
        return _json({"design": store.design, "items": len(store.items), "readers": store.all_progress()})

    routes = [
        Route("/", page), Route("/admin", page),
        Route("/static/{name}", static), Route("/favicon.ico", no_icon),
        Route("/api/login", login, methods=["POST"]), Route("/api/logout", logout, methods=["POST"]),
        Route("/api/me", me), Route("/api/next", next_item),
        Route("/api/image/{item}/{panel}/{view}/{index}", image),
        Route("/api/ratings", rate, methods=["POST"]),
        Route("/api/admin/progress", admin_progress),
    ]
    app = Starlette(routes=routes)
    app.state.store = store
    return app
