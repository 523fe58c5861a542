"""The HTTP plumbing every route shares, in one place (the routes, api/routes/, hold none of it):

- `read_route`: a GET handler with its error answers documented, run on the event loop or in a
  worker thread, and what its ETag stands for;
- query parameters: typed and bounded (`PageLimit`...: the OpenAPI document types them), the
  opaque cursors of keyset pages, and `BadParameter` for what a type cannot say;
- ETags: a data answer's ETag is the generation of what it shows, checked before the handler
  runs (`not_modified`): a matching If-None-Match costs a key lookup or two and no route query;
- errors: every error answer is {"error", "message"}; Litestar's own (no such route or method,
  a typed parameter it refused) are mapped to the same messages here (`EXCEPTION_HANDLERS`);
- the database, handed to each handler as `db` by Litestar's dependency injection.

What holds for every answer at the ASGI level, whichever layer produced it (HEAD, the size
limits of a request, error answers that were not JSON), is api/edge.py.
"""

import base64
import hashlib
import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, ClassVar

import msgspec
from litestar import Request, Response, get
from litestar.di import Provide
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIType
from litestar.params import Parameter
from litestar.types import ExceptionHandlersMap, TypeDecodersSequence
from litestar.utils import is_class_and_subclass

from api import models as m
from api.db import Database, DatabaseUnavailable, Queries, QueryTimeout
from api.stream import TooManyStreams
from core.ids import normalise_benchmark_id

log = logging.getLogger("reev.api")

try:
    VERSION = version("reev-ingest")
except PackageNotFoundError:  # running from a source tree without installing
    VERSION = "0.0.0"

RESPONSES = {
    304: ResponseSpec(None, description="Not modified: If-None-Match matched the current ETag"),
    400: ResponseSpec(m.ErrorBody, description="A query parameter is invalid; the message names it"),
    404: ResponseSpec(m.ErrorBody, description="No such benchmark, execution or route"),
    503: ResponseSpec(m.ErrorBody, description="The database does not exist yet, or a query ran past its time limit"),
}


def read_route(path: str, *, etag: str = "generation", in_thread: bool = False):
    """A GET handler with the error responses documented, run on the event loop: most answers
    are a few rows found by key, and handing each request to a worker thread and back cost more
    than its queries (docs/performance.md has the figures). `in_thread` is for the answers that
    grow with what they show (documents, pages of lines, rendered logs) or count a whole table:
    one of those must not hold up the small ones. The query timeout bounds both.

    `etag` says what the ETag stands for (see etag_for), checked before the handler runs:
    "generation" (any data), "execution:<param>" (the execution that parameter names),
    "benchmark:<param>" (that benchmark and its executions), "results" (finished executions);
    or "keyed": the handler computes it (responses that show the clock)."""
    return get(path, sync_to_thread=in_thread, opt={"etag": etag}, responses=RESPONSES)


def dependencies(db: Database) -> dict[str, Provide]:
    """What handlers are handed by name: `db`, the worker's read-only database."""
    return {"db": Provide(lambda: db, sync_to_thread=False, use_cache=True)}


# ---------------------------------------------------------------------- query parameters

class BadParameter(Exception):
    def __init__(self, name: str, problem: str):
        super().__init__(f"query parameter `{name}` {problem}")
        self.name = name


ECHOED = 64     # characters of a client's input that a message repeats


def echo(value: str, quoted: bool = True) -> str:
    """A client's input quoted in a message (or not: digits need no quotes), cut to ECHOED characters."""
    shown = repr if quoted else str
    return shown(value) if len(value) <= ECHOED else shown(value[:ECHOED]) + f"... ({len(value)} characters)"


MAX_INTEGER = 2**63 - 1     # a SQLite integer: no number a client gives is bound beyond it


def parse_integer(text: str) -> int:
    """The one integer syntax of the API's input (a query parameter, a Last-Event-ID): ASCII
    digits, leading zeros allowed; no sign, space, underscore, fraction, exponent or other
    script's digits (int() and msgspec's lax conversion take some of those). ValueError if it
    is not one; OverflowError if it is one above MAX_INTEGER (read without converting it all)."""
    if not (text.isascii() and text.isdigit()):
        raise ValueError(text)
    if len(text.lstrip("0")) > len(str(MAX_INTEGER)) or (number := int(text)) > MAX_INTEGER:
        raise OverflowError(text)
    return number


class BoundedInteger(int):
    """A typed integer query parameter from LOW to HIGH. Litestar hands its text to `decode`
    (TYPE_DECODERS): msgspec's own int conversion is lax with text (`1e2`, `5.0`), and msgspec
    cannot bound a custom type, so the type holds its bounds and `parameter` puts them in the
    OpenAPI document. A subclass per range, so a default value is typed as the parameter is."""
    LOW: ClassVar[int]
    HIGH: ClassVar[int]

    @classmethod
    def problem(cls, text: str) -> str | None:
        """What is wrong with `text` as this parameter, as its 400 says it; None: nothing."""
        try:
            if cls.LOW <= parse_integer(text) <= cls.HIGH:
                return None
        except ValueError:
            return f"must be an integer, got {echo(text)}"
        except OverflowError:
            pass
        return f"must be between {cls.LOW} and {cls.HIGH}, got {echo(text, quoted=False)}"

    @staticmethod
    def decode(kind: type["BoundedInteger"], value: Any) -> "BoundedInteger":
        text = value if isinstance(value, str) else ""
        if (problem := kind.problem(text)) is not None:
            raise ValueError(problem)     # a 400: refused_parameter says `problem` with the name
        return kind(text)

    @classmethod
    def parameter(cls, description: str) -> Any:
        """What the OpenAPI document says of it: an integer, with its bounds."""
        return Parameter(description=f"{description}, {cls.LOW} to {cls.HIGH}",
                         schema_extra={"type": OpenAPIType.INTEGER, "minimum": cls.LOW, "maximum": cls.HIGH})


class RowCount(BoundedInteger):
    LOW, HIGH = 1, 500


class BenchmarkCount(BoundedInteger):
    LOW, HIGH = 1, 10_000


TYPE_DECODERS: TypeDecodersSequence = [
    (lambda kind: is_class_and_subclass(kind, BoundedInteger), BoundedInteger.decode)]
DEFAULT_LIMIT = RowCount(50)
DEFAULT_BENCHMARKS = BenchmarkCount(1000)
PageLimit = Annotated[RowCount, RowCount.parameter("rows per page")]
BenchmarkLimit = Annotated[BenchmarkCount, BenchmarkCount.parameter("benchmarks listed")]
Cursor = Annotated[str | None, Parameter(description="the next_cursor of the page before; none: the first page")]


# What a cursor holds: the key of the last row of a page. A row id or line number is a
# SQLite integer (never negative here); a time is a finite float (msgspec refuses one out of
# range). A decoded cursor is one SQLite can bind as it is.
RowKey = tuple[Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]]
TimeKey = tuple[float, str]


def encode_cursor(*key) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(key)).decode().rstrip("=")


def decode_cursor(value: str | None, shape: Any) -> tuple | None:
    """An opaque cursor back into its key of this shape; a 400 naming `cursor` for anything
    else, before any query runs."""
    if value is None or value == "":
        return None
    try:
        return msgspec.json.decode(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), type=shape)
    except (ValueError, msgspec.DecodeError):     # binascii.Error and msgspec.ValidationError among them
        raise BadParameter("cursor", "is not a cursor this API returned") from None


def paged(rows: list, limit: int, key) -> tuple[list, str | None]:
    """Rows fetched with limit + 1: the page, and the cursor after its last row if more follow."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(*key(rows[-1]))


def by_time(row) -> tuple:
    """The key of pages newest first (executions, results)."""
    return row.sort_at, row.execution_id


def by_line(row) -> tuple:
    return (row.line,)


# ---------------------------------------------------------------------- ETags

def etag_of(q: Queries, version: str) -> str:
    """A data route's ETag: what the answer shows is at `version` (see etag_for) of this
    database (its identity: another database counts its generations from 0 too), as this
    release of the API renders it."""
    return f'W/"{version}-{q.database_id or ""}-{VERSION}"'


def execution_etag(q: Queries, version: tuple[int, int]) -> str:
    """An execution's ETag, from its version (Queries.execution_version, RunRow.version)."""
    return etag_of(q, f"e{version[0]}.{version[1]}")


def etag_for(q: Queries, request: Request) -> str:
    """The ETag of a data route's answer: the generation of just what it shows when the route
    names a scope, so a poller of one execution gets 304 while others are being ingested;
    else the data generation. Read in the snapshot the answer is read in."""
    kind, _, param = request.route_handler.opt["etag"].partition(":")
    if kind == "execution":
        execution_id = request.path_params.get(param) or request.query_params.get(param)
        version = q.execution_version(execution_id) if execution_id else None
        if version is not None:    # (an unknown one is a 404 anyway)
            return execution_etag(q, version)
    elif kind == "benchmark":
        scope = "benchmark:" + normalise_benchmark_id(request.path_params[param])
        return etag_of(q, f"b{q.scope_generation(scope)}")
    elif kind == "results":
        return etag_of(q, f"r{q.scope_generation('results')}")
    return etag_of(q, f"g{q.generation()}")


def matches(request: Request, tag: str) -> bool:
    given = request.headers.get("if-none-match")
    if not given:
        return False
    return given.strip() == "*" or tag in [t.strip() for t in given.split(",")]


def data_response(body: Any, tag: str) -> Response:
    return Response(content=body, headers={"ETag": tag})


def keyed_response(request: Request, body: Any, key: tuple) -> Response:
    """For responses that show the clock (health, ingest status): the ETag covers what a poller
    acts on (`key`: the database's identity and generation, heartbeat, state), not the timestamp
    that differs every call."""
    tag = 'W/"' + hashlib.blake2b(msgspec.json.encode(key), digest_size=12).hexdigest() + '"'
    if matches(request, tag):
        return Response(content=None, status_code=304, headers={"ETag": tag})
    return Response(content=body, headers={"ETag": tag})


async def not_modified(request: Request) -> Response | None:
    """Answer a matching If-None-Match with 304 before the handler runs any of its queries (and
    before its parameters are read). Async, so that it runs on the loop (a key lookup or two):
    Litestar runs a sync hook in a worker thread, for every request."""
    if request.route_handler.opt.get("etag") in (None, "keyed", "none") or "if-none-match" not in request.headers:
        return None
    with request.app.state.db.lookup() as q:
        tag = etag_for(q, request)
    if matches(request, tag):
        return Response(content=None, status_code=304, headers={"ETag": tag})
    return None


# ---------------------------------------------------------------------- errors

READ_ONLY_MESSAGE = ("this API is read-only: runs are started with the reev runner, and "
                     "reev-ingestd picks up what it writes")
SYNC_MESSAGE = ("reev-ingestd follows the files continuously; for a full rescan, "
                "run `systemctl reload reev-ingestd` (SIGHUP)")
ALLOW = "GET, HEAD, OPTIONS"


def not_found(message: str) -> NotFoundException:
    return NotFoundException(detail=message)


def error(status: int, message: str, headers: dict | None = None) -> Response[m.ErrorBody]:
    return Response(content=m.ErrorBody(error=m.error_kind(status), message=message), status_code=status,
                    headers=headers)


def refused_parameter(request: Request, exc: ValidationException) -> str:
    """What a typed query parameter Litestar refused is told: a BoundedInteger's own problem
    (`must be an integer, got ...`, `must be between <LOW> and <HIGH>, got <n>`); a required one
    left out (or empty, api/edge.py), `is required` (Litestar's own message repeats the URL)."""
    if isinstance(missing := exc.__cause__, KeyError) and missing.args and isinstance(missing.args[0], str):
        return str(BadParameter(missing.args[0], "is required"))     # (the KeyError of its extractor)
    for problem in exc.extra if isinstance(exc.extra, list) else []:
        name = problem.get("key") if isinstance(problem, dict) else None
        if not isinstance(name, str) or (field := request.route_handler.parsed_fn_signature.parameters.get(name)) \
                is None or not field.is_subclass_of(BoundedInteger):
            continue
        given = request.query_params.getall(name, [])
        if given and (told := field.annotation.problem(given[-1])) is not None:
            return str(BadParameter(name, told))
    return str(exc.detail)


def on_http_error(request: Request, exc: HTTPException) -> Response:
    writes = request.method not in ("GET", "HEAD", "OPTIONS")
    if writes and (isinstance(exc, (NotFoundException, MethodNotAllowedException))):
        sync = request.url.path.rstrip("/") == "/api/v1/sync"
        return error(405, SYNC_MESSAGE if sync else READ_ONLY_MESSAGE, {"Allow": ALLOW})
    if isinstance(exc, MethodNotAllowedException):
        return error(405, f"{echo(request.method)} is not allowed here", {"Allow": ALLOW})
    if isinstance(exc, NotFoundException):
        detail = exc.detail if exc.detail and exc.detail != "Not Found" else f"no route {echo(request.url.path)}"
        return error(404, detail)
    if isinstance(exc, ValidationException):
        return error(400, refused_parameter(request, exc))
    return error(exc.status_code, str(exc.detail))


def on_bad_parameter(_request: Request, exc: BadParameter) -> Response:
    return error(400, str(exc))


def on_unavailable(_request: Request, exc: Exception) -> Response:
    return error(503, str(exc), {"Retry-After": "1"})


def on_too_many_streams(_request: Request, exc: TooManyStreams) -> Response:
    # closed after the answer: a client turned away does not keep a connection for nothing
    return error(503, str(exc), {"Retry-After": "1", "Connection": "close"})


def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("%s %s failed", request.method, request.url.path)
    return error(500, "the server failed to answer this request; see its log")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    HTTPException: on_http_error, BadParameter: on_bad_parameter, TooManyStreams: on_too_many_streams,
    DatabaseUnavailable: on_unavailable, QueryTimeout: on_unavailable, Exception: on_unexpected}
