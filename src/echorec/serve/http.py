"""HTTP service over a Recommender (FastAPI): POST /recommend, POST /recommend/batch, GET /health,
GET /model, OpenAPI docs at /docs.

Concurrent requests are micro-batched: the first request waits at most `max_wait` (5 ms) for others,
then all of them are scored in one forward pass on a worker thread, so the event loop never blocks.
Bad input (unknown fields, wrong types, k out of range, bodies over `max_body` bytes) gets a 4xx
with a message; a 5xx means a bug.
"""


import asyncio
import time
from typing import Union

from echorec.errors import EchorecError
from echorec.serve.recommender import Recommender

MAX_HISTORY = 10_000  # items per history accepted in one request
MAX_BATCH = 1_024  # histories per /recommend/batch request


class MicroBatcher:
    def __init__(self, rec: Recommender, max_wait: float = 0.005, max_batch: int = 256):
        self.rec, self.max_wait, self.max_batch = rec, max_wait, max_batch
        self.queue: asyncio.Queue | None = None
        self.task = None
        self.batches = 0  # forward passes run (for tests and /health)

    async def start(self):
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    async def stop(self):
        if self.task:
            self.task.cancel()

    async def submit(self, history, k, exclude_seen) -> dict:
        if self.queue is None:
            await self.start()
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put(((history, k, exclude_seen), fut))
        return await fut

    async def _run(self):
        loop = asyncio.get_running_loop()
        while True:
            first = await self.queue.get()
            batch = [first]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            reqs = [r for r, _ in batch]
            try:
                answers = await loop.run_in_executor(None, self.rec.answer_many, reqs)
                self.batches += 1
                for (_, fut), ans in zip(batch, answers):
                    if not fut.done():
                        fut.set_result(ans)
            except Exception as e:  # deliver the error to every waiting request, keep serving
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)


def create_app(rec: Recommender, max_wait: float = 0.005, max_body: int = 1 << 20):
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field

    n = rec.n_items
    Item = Union[str, int]

    class RecommendIn(BaseModel):
        model_config = ConfigDict(extra="forbid")
        history: list[Item] = Field(default_factory=list, max_length=MAX_HISTORY,
                                    description="raw item ids, oldest first")
        k: int = Field(10, ge=1, le=n, description=f"how many items (1..{n})")
        exclude_seen: bool = True

    class BatchIn(BaseModel):
        model_config = ConfigDict(extra="forbid")
        histories: list[list[Item]] = Field(..., min_length=1, max_length=MAX_BATCH)
        k: int = Field(10, ge=1, le=n)
        exclude_seen: bool = True

    class Scored(BaseModel):
        item: str
        score: float

    class RecommendOut(BaseModel):
        items: list[Scored]
        dropped: list[str] = Field(description="history items unknown to the model, ignored")
        fallback: bool = Field(description="true: no known history, the most popular items were returned")
        used: int = Field(description="history items the model read (at most max_len)")

    batcher = MicroBatcher(rec, max_wait)
    app = FastAPI(title="echorec", version="1", description=f"Next-item recommendations from a {rec.info['model']} "
                  f"model trained on {rec.info['dataset']}.")
    app.state.batcher = batcher

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > max_body):
            return JSONResponse({"detail": f"request body over {max_body} bytes"}, status_code=413)
        return await call_next(request)

    @app.exception_handler(EchorecError)
    async def user_error(request, exc):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    def check_history(h):
        if len(h) > MAX_HISTORY:
            raise HTTPException(422, f"a history may hold at most {MAX_HISTORY} items")

    @app.post("/recommend", response_model=RecommendOut)
    async def recommend(body: RecommendIn):
        return await batcher.submit([str(i) for i in body.history], body.k, body.exclude_seen)

    @app.post("/recommend/batch", response_model=list[RecommendOut])
    async def recommend_batch(body: BatchIn):
        for h in body.histories:
            check_history(h)
        futs = [batcher.submit([str(i) for i in h], body.k, body.exclude_seen) for h in body.histories]
        return await asyncio.gather(*futs)

    started = time.time()

    @app.get("/health")
    async def health():
        return {"status": "ok", "uptime_s": round(time.time() - started, 1), "forward_passes": batcher.batches}

    @app.get("/model")
    async def model_info():
        return rec.info

    return app


def serve(run_dir: str, host: str = "127.0.0.1", port: int = 8000, max_wait: float = 0.005, device="cpu") -> None:
    import uvicorn

    rec = Recommender.from_run(run_dir, device)
    uvicorn.run(create_app(rec, max_wait), host=host, port=port, log_level="warning")
