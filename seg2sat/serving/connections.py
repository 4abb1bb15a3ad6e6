"""waitress for both servers, with connection limits that hold against slow and idle clients.

waitress reads requests asynchronously and hands only complete ones to its threads, so a
slow client costs a socket, not a thread. What it lacks: its default of 100 connections is
reached by 101 idle sockets (then every request waits), a client trickling a byte every few
seconds is never timed out (its idle timer restarts with each byte), and its own errors
(413 from its body limit) are plain text. :func:`make_waitress` fixes all three: a high
connection limit polled with ``poll()`` (no ``select()`` 1024-descriptor ceiling), a
deadline for each request to arrive whole, and JSON errors with CORS headers.
"""

from __future__ import annotations

import json
import resource
import time

from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

from .guard import normal_origin

CONNECTION_LIMIT = 1000
"""Open connections waitress accepts (idle ones included); capped by the process's descriptor limit."""
CHANNEL_TIMEOUT = 30
"""Seconds an idle keep-alive connection stays open."""
REQUEST_TIMEOUT = 30
"""Seconds a client has to send a whole request (headers and body) once it starts: no slow loris."""


class JsonErrorTask(ErrorTask):
    """waitress's own refusals (413 body too large, 400 bad framing) in the servers' JSON shape."""

    def execute(self):
        error = self.request.error
        self.status = f"{error.code} {error.reason}"
        body = json.dumps({"error": f"{error.reason}: {error.body}"}).encode()
        self.response_headers.append(("Content-Type", "application/json"))
        origin = self.request.headers.get("ORIGIN")
        policy = getattr(self.channel.server, "seg2sat_policy", None)
        if origin and policy is not None and policy.cross_origin_ok(origin):
            self.response_headers.append(("Access-Control-Allow-Origin", normal_origin(origin)))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class DeadlineChannel(HTTPChannel):
    """Notes when a request starts arriving, so maintenance can close one that takes too long."""

    error_task_class = JsonErrorTask
    started: float | None = None

    def received(self, data):
        if data and self.request is None and self.started is None:
            self.started = time.monotonic()
        result = super().received(data)
        if self.request is None:  # nothing partial left: the next request gets a fresh deadline
            self.started = None
        return result


def _maintenance(server, request_timeout: float):
    """waitress closes idle channels; this also closes those whose request has not arrived in time."""
    original = server.maintenance

    def maintenance(now):
        original(now)
        cutoff = time.monotonic() - request_timeout
        for channel in list(server.active_channels.values()):
            started = getattr(channel, "started", None)
            if started is not None and started < cutoff and not channel.requests:
                channel.will_close = True

    return maintenance


def connection_limit(wanted: int = CONNECTION_LIMIT) -> int:
    """``wanted``, or less where the descriptor limit (``ulimit -n``) would not leave room for files and threads."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, min(wanted, soft - 64)) if soft != resource.RLIM_INFINITY else wanted


def make_waitress(app, host: str, port: int, threads: int, max_body_bytes: int,
                  request_timeout: float = REQUEST_TIMEOUT, channel_timeout: float = CHANNEL_TIMEOUT):
    """A waitress server for ``app`` that slow clients cannot starve (see the module's docstring).

    waitress's body limit sits a little above the app's, so the app's JSON 413 answers first
    whenever the size is known; waitress's (now JSON too) stops chunked bodies beyond it.
    """
    from waitress import create_server

    server = create_server(app, host=host, port=port, threads=threads, ident="seg2sat",
                           max_request_body_size=max_body_bytes + 2**20, connection_limit=connection_limit(),
                           channel_timeout=channel_timeout, cleanup_interval=max(1, min(5, request_timeout / 3)),
                           asyncore_use_poll=True)
    server.channel_class = DeadlineChannel
    server.seg2sat_policy = app.extensions.get("seg2sat_policy")  # server.application is waitress's wrapper
    server.maintenance = _maintenance(server, request_timeout)
    return server


__all__ = ["CHANNEL_TIMEOUT", "CONNECTION_LIMIT", "REQUEST_TIMEOUT", "make_waitress"]
