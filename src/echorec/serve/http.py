"""HTTP service over a Recommender (FastAPI): POST /recommend, POST /recommend/batch, GET /health,
GET /model; the OpenAPI schema at /openapi.json (Swagger UI at /docs only with `docs=True`: it loads its
scripts from a CDN, so it is off by default and the service works offline).

Concurrent requests are micro-batched: the first request waits at most `max_wait` (--max-wait-ms) for others,
then all of them are scored in one forward pass on a worker thread. Everything that grows with the input
(strict JSON parsing, validation, scoring, writing the reply) runs on worker threads, so the event loop
only moves bytes and /health answers while a big request is processed.

Bad input never gets a 5xx: a body over `max_body` bytes (counted as it arrives, chunked uploads too) is
413; a body that is not application/json is 415 (so a page on another site cannot post a form or plain text
that gets scored); a body that is not strict JSON (NaN, Infinity, numbers that overflow, lone surrogates,
nesting past a limit) is 400; a body that does not fit the schema (strictly typed: `"5"` is not a number,
`"yes"` not a boolean) is 422 with messages that never echo the input.

Slow clients cannot hold the service: a request's headers must arrive within HEADER_TIMEOUT seconds of the
connection (or of the last answer on a kept-alive one) and its body within BODY_TIMEOUT, idle connections close
after KEEP_ALIVE seconds, and past `max_connections` open connections new requests get 503. SIGTERM stops the
server within SHUTDOWN_TIMEOUT seconds whatever is in flight.
"""


import asyncio
import json
import time

from echorec.errors import EchorecError
from echorec.serve.recommender import Recommender

MAX_HISTORY = 10_000  # items per history accepted in one request
MAX_BATCH = 1_024  # histories per /recommend/batch request
MAX_K = 1_000  # items per answer (and never more than the catalogue)
MAX_RESULTS = 100_000  # histories x k per request: bounds the reply's size and the time to write it
MAX_DROPPED = 100  # unknown history items listed per answer (n_dropped counts them all)
MAX_DEPTH = 32  # JSON nesting accepted (the schema needs 3)
HEADER_TIMEOUT = 10.0  # seconds for a request's headers to arrive
BODY_TIMEOUT = 10.0  # seconds for its body
KEEP_ALIVE = 5.0  # seconds an idle kept-alive connection stays open
SHUTDOWN_TIMEOUT = 5.0  # seconds SIGTERM waits for requests in flight
MAX_WAIT_MS = 1000.0  # the micro-batching window's ceiling: a longer one only delays every answer
MAX_FILTER = 10_000  # raw ids per allow / deny list of a request (a longer rule belongs in the server's deny file)


class MicroBatcher:
    """Queues requests (a /recommend/batch request is one entry holding all its histories) and scores
    whatever has arrived within `max_wait` of the first in one forward pass on a worker thread; the
    answers, and the JSON reply, are made there too."""

    def __init__(self, rec: Recommender, max_wait: float = 0.005, max_batch: int = 256, finish=None):
        self.rec, self.max_wait, self.max_batch = rec, max_wait, max_batch
        self.finish = finish or (lambda answers: answers)  # applied to each entry's answers on the worker thread
        self.queue: asyncio.Queue | None = None
        self.task = None
        self.loop = None
        self.batches = 0  # forward passes run (for tests and /health)

    async def start(self):
        self.loop = asyncio.get_running_loop()
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    async def stop(self):
        if self.task:
            self.task.cancel()
        self.queue, self.task = None, None

    async def submit_many(self, requests: list[tuple]):
        """(history, k, exclude_seen) per request -> finish(their answers)."""
        # (Re)started on the running loop: a test client may run each request on a loop of its own.
        if self.queue is None or self.loop is not asyncio.get_running_loop():
            await self.start()
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((requests, fut))
        return await fut

    async def submit(self, history, k, exclude_seen) -> dict:
        return (await self.submit_many([(history, k, exclude_seen)]))[0]

    def _score(self, batch) -> list:
        answers = self.rec.answer_many([r for reqs, _ in batch for r in reqs])
        out, i = [], 0
        for reqs, _ in batch:
            out.append(self.finish(answers[i:i + len(reqs)]))
            i += len(reqs)
        return out

    async def _run(self):
        loop = asyncio.get_running_loop()
        while True:
            first = await self.queue.get()
            batch, size = [first], len(first[0])
            deadline = loop.time() + self.max_wait
            while size < self.max_batch:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    entry = await asyncio.wait_for(self.queue.get(), left)
                except asyncio.TimeoutError:
                    break
                batch.append(entry)
                size += len(entry[0])
            try:
                results = await loop.run_in_executor(None, self._score, batch)
                self.batches += 1
                for (_, fut), res in zip(batch, results):
                    if not fut.done():
                        fut.set_result(res)
            except Exception as e:  # deliver the error to every waiting request, keep serving
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)


class BadBody(ValueError):
    """A request body that is not strict JSON."""


class TooMuch(ValueError):
    """A valid request over one of the size limits."""


def _reject_constant(name: str):
    raise BadBody(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    x = float(text)
    if x in (float("inf"), float("-inf")):
        raise BadBody(f"number {text[:40]} overflows a double")
    return x


def _check_strings(obj, depth: int = 0) -> None:
    """Lone surrogates (valid JSON escapes, but not text) and nesting past MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise BadBody(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError:
            raise BadBody("a string holds a lone surrogate (\\ud800-\\udfff), which is not text") from None
    elif isinstance(obj, list):
        for x in obj:
            _check_strings(x, depth + 1)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _check_strings(k, depth + 1)
            _check_strings(v, depth + 1)


def parse_strict(body: bytes):
    """The body as JSON, refusing what Python's json module would let through but is not JSON data: NaN,
    Infinity, numbers that overflow a double, integers past Python's digit limit, lone surrogates."""
    if not body:
        raise BadBody("empty body; send a JSON object")
    try:
        obj = json.loads(body.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float)
    except UnicodeDecodeError as e:
        raise BadBody(f"body is not UTF-8 (byte {e.start + 1})") from None
    except json.JSONDecodeError as e:
        raise BadBody(f"body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise BadBody(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:  # BadBody, or an integer past Python's int_max_str_digits
        raise BadBody(str(e) if isinstance(e, BadBody) else "an integer with too many digits") from None
    _check_strings(obj)
    return obj


def _errors(exc) -> list[dict]:
    """Pydantic's errors without the input (which may be huge, or not serialisable) or its context."""
    return [{"loc": ["body", *e.get("loc", ())], "msg": e.get("msg", "invalid"), "type": e.get("type", "")}
            for e in exc.errors(include_url=False, include_input=False, include_context=False)]


class BodyLimit:
    """ASGI middleware: reads a request body up to `max_body` bytes as it arrives (Content-Length or chunked)
    and answers 413 the moment it is exceeded, never holding more than the limit; a body that has not arrived
    within `timeout` seconds is 408."""

    def __init__(self, app, max_body: int, timeout: float = BODY_TIMEOUT):
        self.app, self.max_body, self.timeout = app, max_body, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return await self._too_big(send)
        chunks, size, more = [], 0, True
        deadline = asyncio.get_running_loop().time() + self.timeout
        while more:
            try:
                msg = await asyncio.wait_for(receive(), max(deadline - asyncio.get_running_loop().time(), 0.0))
            except asyncio.TimeoutError:
                return await self._reply(send, 408, f"request body not received within {self.timeout:g} s")
            if msg["type"] == "http.disconnect":
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return await self._too_big(send)
            chunks.append(chunk)
            more = msg.get("more_body", False)
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _too_big(self, send):
        return await self._reply(send, 413, f"request body over {self.max_body} bytes")

    @staticmethod
    async def _reply(send, status: int, detail: str):
        text = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(text)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": text})


def _schemas(top_k: int):
    """The request and reply models (pydantic), with k bounded by this catalogue: (RecommendIn, BatchIn, RecommendOut)."""
    from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

    Item = StrictStr | StrictInt  # strict: true or 1.0 is not the id "1"

    class RecommendIn(BaseModel):
        model_config = ConfigDict(extra="forbid")
        history: list[Item] = Field(default_factory=list, max_length=MAX_HISTORY,
                                    description="raw item ids, oldest first")
        k: StrictInt = Field(10, ge=1, le=top_k, description=f"how many items (1..{top_k})")
        exclude_seen: StrictBool = True
        allow: list[Item] | None = Field(None, max_length=MAX_FILTER, description="only these items may be "
                                         "recommended (ranked among themselves)")
        deny: list[Item] = Field(default_factory=list, max_length=MAX_FILTER, description="never these items")

    class BatchIn(BaseModel):
        model_config = ConfigDict(extra="forbid")
        histories: list[list[Item]] = Field(..., min_length=1, max_length=MAX_BATCH)
        k: StrictInt = Field(10, ge=1, le=top_k)
        exclude_seen: StrictBool = True
        allow: list[Item] | None = Field(None, max_length=MAX_FILTER, description="for every history")
        deny: list[Item] = Field(default_factory=list, max_length=MAX_FILTER, description="for every history")

    class Scored(BaseModel):
        item: str
        score: float

    class RecommendOut(BaseModel):
        items: list[Scored]
        dropped: list[str] = Field(description=f"history items unknown to the model, ignored (the first "
                                   f"{MAX_DROPPED})")
        n_dropped: int = Field(description="how many history items were unknown")
        fallback: bool = Field(description="true: no known history, the most popular items were returned")
        used: int = Field(description="history items the model read (at most max_len)")

    return RecommendIn, BatchIn, RecommendOut


def _clip(answer: dict) -> dict:
    dropped = answer["dropped"]
    return {**answer, "dropped": dropped[:MAX_DROPPED], "n_dropped": len(dropped)}


def _finish(answers: list[dict]) -> bytes:
    # The reply's JSON is written on the worker thread: a 1,024-history reply is megabytes of text.
    return json.dumps([_clip(a) for a in answers]).encode()


def _batch_requests(b) -> list[tuple]:
    if any(len(h) > MAX_HISTORY for h in b.histories):
        raise TooMuch(f"a history may hold at most {MAX_HISTORY} items")
    if len(b.histories) * b.k > MAX_RESULTS:
        raise TooMuch(f"histories x k may be at most {MAX_RESULTS} per request; split the batch")
    return [([str(i) for i in h], b.k, b.exclude_seen, *_rules(b)) for h in b.histories]


def _rules(b) -> tuple[list[str] | None, list[str]]:
    return (None if b.allow is None else [str(i) for i in b.allow]), [str(i) for i in b.deny]


def _error(status: int, detail):
    from fastapi.responses import JSONResponse

    return JSONResponse({"detail": detail}, status_code=status)


def _body_schema(model) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


async def _read(request, model, prepare):
    """The body, parsed strictly, validated and turned into the batcher's requests by `prepare` on a worker
    thread: (requests, None) or (None, the error reply)."""
    from pydantic import ValidationError

    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        return None, _error(415, f"send the body as application/json (got {kind[:60] or 'no content type'!r})")
    body = await request.body()

    def parse():
        try:
            return prepare(model.model_validate(parse_strict(body))), None
        except BadBody as e:
            return None, _error(400, str(e))
        except ValidationError as e:
            return None, _error(422, _errors(e))
        except TooMuch as e:
            return None, _error(422, str(e))

    return await asyncio.get_running_loop().run_in_executor(None, parse)


def create_app(rec: Recommender, max_wait: float = 0.005, max_body: int = 1 << 20, docs: bool = False,
               on_ready=None):
    """The service; `on_ready()` runs once it accepts connections."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError

    batcher = MicroBatcher(rec, max_wait, finish=_finish)

    @asynccontextmanager
    async def lifespan(app):
        if on_ready is not None:
            on_ready()
        yield
        await batcher.stop()

    app = FastAPI(title="echorec", version="1", description=f"Next-item recommendations from a {rec.info['model']} "
                  f"model trained on {rec.info['dataset']}.", docs_url="/docs" if docs else None, redoc_url=None,
                  lifespan=lifespan)  # info['dataset'] is the data's name, never its path (see Recommender.from_run)
    app.state.batcher = batcher
    app.add_middleware(BodyLimit, max_body=max_body)
    app.add_exception_handler(RequestValidationError, lambda request, exc: _error(422, _errors(exc)))
    app.add_exception_handler(EchorecError, lambda request, exc: _error(400, str(exc)))
    _add_routes(app, rec, batcher)
    return app


def _add_routes(app, rec: Recommender, batcher: MicroBatcher) -> None:
    from fastapi import Request
    from fastapi.responses import Response

    RecommendIn, BatchIn, RecommendOut = _schemas(min(rec.n_items, MAX_K))

    def reply(text: bytes) -> Response:
        return Response(text, media_type="application/json")

    @app.post("/recommend", openapi_extra=_body_schema(RecommendIn), responses={200: {"model": RecommendOut}})
    async def recommend(request: Request):
        reqs, bad = await _read(request, RecommendIn,
                                lambda b: [([str(i) for i in b.history], b.k, b.exclude_seen, *_rules(b))])
        if bad is not None:
            return bad
        return reply((await batcher.submit_many(reqs))[1:-1])  # the one answer of a one-element list

    @app.post("/recommend/batch", openapi_extra=_body_schema(BatchIn), responses={200: {"model": list[RecommendOut]}})
    async def recommend_batch(request: Request):
        reqs, bad = await _read(request, BatchIn, _batch_requests)
        if bad is not None:
            return bad
        return reply(await batcher.submit_many(reqs))

    started = time.time()

    @app.api_route("/health", methods=["GET", "HEAD"])
    async def health():
        out = {"status": "ok", "uptime_s": round(time.time() - started, 1), "forward_passes": batcher.batches}
        if rec.deny_file is not None:
            out["denied_items"] = int(len(rec.deny_file.check()))
        return out

    @app.get("/model")
    async def model_info():
        # No filesystem paths: the service may face people who should not learn the server's layout.
        return {k: v for k, v in rec.info.items() if k != "run"}


def listen(host: str, port: int):
    """A socket bound to host:port, or one line saying why not (before any model is loaded)."""
    import socket

    if not 0 <= port < 65536:
        raise EchorecError(f"--port {port}: use 0..65535 (0: any free port)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise EchorecError(f"--host {host}: {e.strerror}") from None
    family, _, _, _, addr = infos[0]
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and without it
    # every reply (headers and body in two writes) waits for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise EchorecError(f"cannot listen on {host}:{port} ({e.strerror})") from None
    return sock


def guarded_protocol(header_timeout: float = HEADER_TIMEOUT):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request headers have not all arrived within
    `header_timeout` seconds of the connection or of its last answer (a slow-loris client)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Guarded(H11Protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def _arm(self):
            self._seen = self.cycle
            self._header_timer = self.loop.call_later(header_timeout, self._headers_too_slow)

        def _headers_too_slow(self):
            if self.cycle is self._seen and not self.transport.is_closing():  # no new request's headers since
                self.transport.close()

        def data_received(self, data):
            super().data_received(data)
            if self.cycle is not self._seen:  # a request's headers are complete
                self._header_timer.cancel()

        def on_response_complete(self):
            super().on_response_complete()
            if not self.transport.is_closing():
                self._header_timer.cancel()
                self._arm()

        def connection_lost(self, exc):
            self._header_timer.cancel()
            super().connection_lost(exc)

    return Guarded


def check_max_wait(ms: float) -> None:
    if not (0 <= ms <= MAX_WAIT_MS):  # NaN fails too
        raise EchorecError(f"--max-wait-ms {ms}: use 0..{MAX_WAIT_MS:g} (a longer window only delays every answer)")


def serve(run_dir: str, host: str = "127.0.0.1", port: int = 8000, max_wait: float = 0.005, device="cpu",
          docs: bool = False, announce=None, deny_file: str | None = None, max_connections: int = 64) -> None:
    """Bind, load the run, then serve; `announce(url)` is called once the server accepts connections.
    `deny_file`: raw item ids (one per line) never recommended, re-read whenever the file changes."""
    import uvicorn

    from echorec.serve.filters import DenyFile

    check_max_wait(max_wait * 1000)
    if max_connections < 1:
        raise EchorecError(f"--max-connections {max_connections}: at least 1")
    sock = listen(host, port)
    rec = Recommender.from_run(run_dir, device)
    if deny_file is not None:
        rec.deny_file = DenyFile(deny_file, rec.index)
    url = f"http://{host}:{sock.getsockname()[1]}"
    app = create_app(rec, max_wait, docs=docs, on_ready=None if announce is None else lambda: announce(url))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", http=guarded_protocol(),
                                           timeout_keep_alive=int(KEEP_ALIVE), limit_concurrency=max_connections,
                                           timeout_graceful_shutdown=int(SHUTDOWN_TIMEOUT)))
    server.run(sockets=[sock])
