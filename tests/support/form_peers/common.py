"""What the Python peers share: the socket on port 0 whose port goes to stdout, the exit
when the test's end of stdin closes, and the framing part of the JSON report."""

import os
import socket
import sys
import threading


def listen():
    """A listening socket on 127.0.0.1 and a free port; the port is printed first thing,
    alone on a line, for the test harness to read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    print(sock.getsockname()[1], flush=True)
    return sock


def exit_with_stdin():
    """The harness holds our stdin: when it closes (the test dropped us, or died), exit
    at once, so no peer outlives its test."""

    def wait():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            os._exit(0)

    threading.Thread(target=wait, daemon=True).start()


def framing(headers):
    """(framing, content_length) from a mapping of lower-case header names."""
    te = headers.get("transfer-encoding")
    cl = headers.get("content-length")
    if te is not None:
        return te.lower(), None
    if cl is not None:
        return "content-length", int(cl)
    return "none", None
