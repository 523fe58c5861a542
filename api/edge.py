"""The HTTP edge: an ASGI wrapper around the Litestar app for what holds for every answer,
whichever layer under it produced the answer (a route, Litestar's router, its CORS middleware).

- HEAD is answered like GET without the body (Litestar's @get routes only GET, and its router
  rejects HEAD before any middleware could help), and every `Allow` that names GET names HEAD.
- A request target or header section past the limits below is answered 414 or 431 before the
  app parses it.
- An empty query parameter is an absent one (`?limit=&agent=x` and `?limit&agent=x` are
  `?agent=x`): a UI that fills a URL template sends `limit=` for "the default", which typed
  parameters would refuse.
- A path segment that holds an encoded `/` (`%2F`: an agent type is free text) stays one
  segment: ASGI's `path` is decoded, so Litestar's router would see two. Such a path is given
  to the router with each segment's own `/` and `%` escaped (`ESCAPED_SEGMENTS`), and the
  route whose parameter can hold one reads it with api/plumbing.py `path_text`.
- A path or query holding an encoded NUL (`%00`) is answered 400 before the app sees it.
- An error answer that is not JSON (Litestar's CORS refusal is text/plain) is answered as the
  {"error", "message"} every other error is.

What Granian's HTTP layer (hyper) refuses itself never reaches an app: a request it cannot
parse (400: a malformed request line or header, a bad Content-Length, HTTP/0.9, a TLS
handshake), a target of 65 535 bytes or more (414), more than 100 header fields (431). It
answers those with an empty body, and closes the connection. Those limits are hyper's own,
which Granian 2.8 does not let us raise (its HTTP1Settings hold only the header read timeout,
keep-alive, the buffer size and pipelining), so the limits here are below them: any request it
can parse gets a JSON answer.
"""

from urllib.parse import unquote, unquote_to_bytes

import msgspec

from api import models as m
from api.plumbing import echo

MAX_TARGET_BYTES = 8 * 1024       # path and query string: nginx's default for a request line
MAX_HEADER_BYTES = 32 * 1024      # names and values of all fields: nginx's default (4 × 8 KiB)
MAX_HEADER_FIELDS = 64            # hyper's own limit is 100 (see above)
JSON = b"application/json"
ESCAPED_SEGMENTS = "reev.escaped_segments"   # in the scope: path segments are escaped (see segmented_path)


def error_body(status: int, message: str) -> bytes:
    return msgspec.json.encode(m.ErrorBody(error=m.error_kind(status), message=message))


def too_large(scope) -> tuple[int, str] | None:
    """(status, message) when the request is larger than this API reads."""
    target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b""))
    if target > MAX_TARGET_BYTES:
        return 414, f"the request target is {target} bytes; at most {MAX_TARGET_BYTES} are read"
    headers = scope["headers"]
    if len(headers) > MAX_HEADER_FIELDS:
        return 431, f"the request has {len(headers)} header fields; at most {MAX_HEADER_FIELDS} are read"
    size = sum(len(k) + len(v) for k, v in headers)
    if size > MAX_HEADER_BYTES:
        return 431, f"the request's header fields are {size} bytes; at most {MAX_HEADER_BYTES} are read"
    return None


def holds_nul(scope) -> tuple[int, str] | None:
    """(400, message naming the parameter or the path) when the query or the path holds an
    encoded NUL character (%00): no id or value the daemon stores holds one (daemon/parse.py),
    and PostgreSQL cannot be asked for one."""
    query = scope.get("query_string", b"")
    if b"%00" in query:
        part = next(p for p in query.split(b"&") if b"%00" in p)
        name = unquote(part.partition(b"=")[0].decode("latin-1"))
        return 400, f"query parameter `{echo(name, quoted=False)}` holds a NUL character (%00): no stored value does"
    if "\x00" in scope["path"]:
        return 400, "the path holds a NUL character (%00), which no id can hold"
    return None


def without_empty_parameters(query: bytes) -> bytes:
    """The query string without the parameters whose value is empty (`name=` or a bare `name`);
    every other part as sent (a value may itself end in `=`: base64 padding)."""
    return b"&".join(part for part in query.split(b"&") if part.partition(b"=")[2])


def segmented_path(raw_path: bytes) -> str | None:
    """The path as the client split it, when a segment holds an encoded `/`: each segment
    decoded, then its `%` and `/` escaped again (%25, %2F), so the router splits where the
    client did; None when no segment holds one (the path as ASGI decoded it is that)."""
    if b"%2f" not in raw_path.lower():
        return None
    return "/".join(unquote_to_bytes(part).decode("utf-8", "replace").replace("%", "%25").replace("/", "%2F")
                    for part in raw_path.split(b"/"))


def path_text(scope, value: str) -> str:
    """A path parameter's text as the client meant it (see segmented_path)."""
    return unquote(value) if scope.get(ESCAPED_SEGMENTS) else value


def with_head_allowed(headers: list) -> list:
    """`Allow: GET, OPTIONS` (Litestar's, from the route) → `Allow: GET, HEAD, OPTIONS`."""
    out = []
    for name, value in headers:
        if name.lower() == b"allow":
            methods = {v.strip() for v in value.split(b",")}
            if b"GET" in methods:
                value = b", ".join(sorted(methods | {b"HEAD"}))
        out.append((name, value))
    return out


def is_json(headers: list) -> bool:
    return any(name.lower() == b"content-type" and value.startswith(JSON) for name, value in headers)


class Edge:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        head = scope["method"] == "HEAD"
        if head:
            scope["method"] = "GET"     # in place: wrappers outside see the route it took
        send = self._answer(send, head)
        query = scope.get("query_string", b"")
        if query:
            scope["query_string"] = without_empty_parameters(query)
        raw_path = scope.get("raw_path")
        if raw_path and b"%" in raw_path and (path := segmented_path(raw_path)) is not None:
            scope["path"], scope[ESCAPED_SEGMENTS] = path, True
        refused = too_large(scope) or holds_nul(scope)
        if refused:
            status, message = refused
            body = error_body(status, message)
            await send({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", JSON), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
            return await send({"type": "http.response.body", "body": body})
        return await self.app(scope, receive, send)

    @staticmethod
    def _answer(send, head: bool):
        held = None            # the start of an error answer whose body is being re-shaped
        parts: list[bytes] = []

        async def answer(message):
            nonlocal held
            if message["type"] == "http.response.start":
                status = message["status"]
                if status == 204 or status >= 400:      # OPTIONS and errors: the answers changed here
                    message = {**message, "headers": with_head_allowed(message.get("headers") or [])}
                    if status >= 400 and not is_json(message["headers"]):
                        held = message
                        return
            elif held is not None:
                parts.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                body = error_body(held["status"], b"".join(parts).decode("utf-8", "replace").strip()
                                  or f"HTTP {held['status']}")
                headers = [(k, v) for k, v in held["headers"] if k.lower() not in (b"content-type", b"content-length")]
                await send({**held, "headers": [*headers, (b"content-type", JSON),
                                                (b"content-length", str(len(body)).encode())]})
                message = {"type": "http.response.body", "body": b"" if head else body}
            elif head and message.get("body"):
                message = {**message, "body": b""}
            await send(message)

        return answer
