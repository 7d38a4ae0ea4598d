"""A form handler on Starlette: python-multipart parses the body, uvicorn (h11) serves
it. POST /upload answers a JSON report of what the parser decoded; /redirect answers
307 to /upload without reading the body.

The report: framing ("chunked", "content-length" or "none"), content_length, body_bytes
(the raw body bytes uvicorn handed over), content_type, and parts in order, each with
name, filename (None for a field), content_type, size, and sha256 for a file or value
for a field."""

import asyncio
import hashlib

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import common


class CountBody:
    """ASGI middleware: counts the body bytes each request delivered."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        counter = {"bytes": 0}
        scope.setdefault("state", {})["body_counter"] = counter

        async def counting_receive():
            message = await receive()
            if message["type"] == "http.request":
                counter["bytes"] += len(message.get("body", b""))
            return message

        return await self.app(scope, counting_receive, send)


async def upload(request):
    framing, length = common.framing(request.headers)
    try:
        # Limits far above what the tests send; the defaults (1,000 parts) would do too.
        form = await request.form(max_files=100000, max_fields=100000)
    except Exception as e:  # what the parser refused, for the test to show
        return JSONResponse({"error": f"{type(e).__name__}: {e}"}, status_code=400)
    parts = []
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            digest = hashlib.sha256()
            size = 0
            while True:
                block = await value.read(1 << 20)
                if not block:
                    break
                size += len(block)
                digest.update(block)
            parts.append(
                {
                    "name": name,
                    "filename": value.filename,
                    "content_type": value.content_type,
                    "size": size,
                    "sha256": digest.hexdigest(),
                }
            )
        else:
            parts.append(
                {
                    "name": name,
                    "filename": None,
                    "content_type": None,
                    "size": len(value.encode()),
                    "value": value,
                }
            )
    await form.close()
    return JSONResponse(
        {
            "peer": "starlette",
            "method": request.method,
            "framing": framing,
            "content_length": length,
            "body_bytes": request.scope["state"]["body_counter"]["bytes"],
            "content_type": request.headers.get("content-type"),
            "parts": parts,
        }
    )


async def redirect(request):
    return Response(status_code=307, headers={"location": "/upload"})


app = CountBody(
    Starlette(
        routes=[
            Route("/upload", upload, methods=["POST", "PUT"]),
            Route("/redirect", redirect, methods=["POST", "PUT"]),
        ]
    )
)

if __name__ == "__main__":
    sock = common.listen()
    common.exit_with_stdin()
    config = uvicorn.Config(app, http="h11", log_level="warning", lifespan="off")
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
