"""A form handler on aiohttp's server with its streaming multipart reader. POST /upload
answers the same JSON report as starlette_peer.py; /redirect answers 307 to /upload
without reading the body."""

import asyncio
import hashlib

from aiohttp import web

import common


async def upload(request):
    framing, length = common.framing(request.headers)
    parts = []
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            digest = hashlib.sha256()
            size = 0
            data = bytearray()
            while True:
                block = await part.read_chunk(1 << 16)
                if not block:
                    break
                size += len(block)
                if part.filename is None:
                    data += block
                else:
                    digest.update(block)
            entry = {
                "name": part.name,
                "filename": part.filename,
                "content_type": part.headers.get("Content-Type"),
                "size": size,
            }
            if part.filename is None:
                entry["value"] = data.decode("utf-8", "replace")
            else:
                entry["sha256"] = digest.hexdigest()
            parts.append(entry)
    except Exception as e:  # what the reader refused, for the test to show
        return web.json_response({"error": f"{type(e).__name__}: {e}"}, status=400)
    return web.json_response(
        {
            "peer": "aiohttp",
            "method": request.method,
            "framing": framing,
            "content_length": length,
            "body_bytes": request.content.total_bytes,
            "content_type": request.headers.get("Content-Type"),
            "parts": parts,
        }
    )


async def redirect(request):
    return web.Response(status=307, headers={"Location": "/upload"})


async def main():
    sock = common.listen()
    common.exit_with_stdin()
    app = web.Application()
    app.router.add_route("*", "/upload", upload)
    app.router.add_route("*", "/redirect", redirect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
