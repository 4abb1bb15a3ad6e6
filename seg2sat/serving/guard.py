"""What a web page may ask of a local server: Host and Origin checks, CORS, and JSON bodies read safely.

Both servers (``seg2sat serve`` and ``seg2sat ui``) listen on loopback, where any page the
user opens can reach them. Three attacks matter, and each has one check here:

* **DNS rebinding**: a page on ``http://evil.example:PORT`` whose name resolves to 127.0.0.1
  is, to the browser, its own origin, so it may read our answers. Its requests carry
  ``Host: evil.example:PORT``: a Host that is not the address we serve is refused (403).
* **Cross-site requests**: any page may *send* a form or ``text/plain`` POST (no preflight).
  State-changing requests with a foreign ``Origin`` are refused (403), JSON endpoints take
  ``application/json`` only (which a foreign page cannot send without a CORS preflight
  we do not grant), and form uploads need a proof of same origin.
* **Deliberate cross-origin use** (Drawing2Map's page pointed at a local ``seg2sat serve``):
  the origins named in ``--allowed-origins`` get proper CORS answers, errors included.

JSON is parsed here too, with a nesting limit, so no body can raise RecursionError (a 500).
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from werkzeug.exceptions import HTTPException

from ..options import spell

LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
"""Host names that always mean this machine's loopback: no rebinding page can be served under them."""
WILDCARDS = frozenset({"0.0.0.0", "::", ""})
"""Bind addresses that listen on every interface."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SIMPLE_TYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded", "text/plain"})
"""Content types any page may POST to any server without a CORS preflight (the CSRF vectors)."""
MAX_DEPTH = 64
"""JSON nesting limit: our bodies are 3 levels deep; Python's parser overflows near 1000."""
CORS_METHODS = "GET, POST, OPTIONS"
CORS_HEADERS = "Content-Type, Accept, Authorization"
EXPOSED = "X-Seed, X-Off-Palette, X-Backend, Server-Timing, Retry-After"


class Refused(HTTPException):
    """A refusal with its own status and sentence; both apps answer it as ``{"error": sentence}``.

    The sentence names settings as fields (`` `allowed_hosts` ``) and is spelled here, where it becomes an HTTP
    answer, the servers' way (SEG2SAT_ALLOWED_HOSTS (--allowed-hosts)).
    """

    def __init__(self, code: int, message: str):
        super().__init__(description=spell(message, "server"))
        self.code = code


def split_list(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"a, b c"`` or a list -> ``("a", "b", "c")``: how --allowed-hosts and their variables are written."""
    if not text:
        return ()
    items = text.replace(",", " ").split() if isinstance(text, str) else [t for s in text for t in split_list(s)]
    return tuple(dict.fromkeys(item.strip() for item in items if item.strip()))


def host_name(host: str) -> str:
    """``"[::1]:8080"`` -> ``"::1"``, ``"Example.COM.:80"`` -> ``"example.com"``: the name without its port."""
    host = host.strip().lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def normal_origin(origin: str) -> str | None:
    """``"HTTP://Example.com:80/"`` -> ``"http://example.com"``; None for what is not an http(s) origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


@dataclass
class Policy:
    """Which Hosts a server answers and which foreign origins it serves (CORS); one per app."""

    bound: str = "127.0.0.1"
    """The address the server listens on: its name is a Host it serves."""
    hosts: tuple[str, ...] = ()
    """More Host names (a reverse proxy's); ``*`` turns the Host check off."""
    origins: tuple[str, ...] = ()
    """Foreign origins that may use the server from a page (``seg2sat serve --allowed-origins``)."""
    max_depth: int = MAX_DEPTH
    _names: frozenset[str] = field(default=frozenset(), init=False, repr=False)

    def __post_init__(self) -> None:
        bad = [o for o in self.origins if normal_origin(o) is None or normal_origin(o) != o.rstrip("/").lower()]
        if bad:
            raise ValueError(f"allowed origins must look like http://host:port (scheme, host, port, no path), "
                             f"got {bad[0]!r}")
        self.origins = tuple(normal_origin(o) for o in self.origins)  # type: ignore[misc]
        self.bind(self.bound)

    def bind(self, host: str) -> None:
        """Set the listening address (known once the server is made); a wildcard adds this machine's names."""
        self.bound = host
        names = set(LOCAL_NAMES) | {host_name(h) for h in self.hosts}
        if host not in WILDCARDS:
            names.add(host_name(host))
        else:
            hostname = socket.gethostname().lower()
            names |= {hostname, f"{hostname}.local"}
        self._names = frozenset(names)

    def host_ok(self, host: str) -> bool:
        """Whether a request's Host header names this server (see the module's docstring for why)."""
        if "*" in self.hosts:
            return True
        name = host_name(host)
        if name in self._names:
            return True
        # Listening on every interface, the machine's addresses are its own; an IP literal is no
        # rebinding vector (a page under it is served by that address).
        return self.bound in WILDCARDS and _is_ip(name)

    def cross_origin_ok(self, origin: str | None) -> bool:
        """Whether ``origin`` is a foreign origin this server deliberately serves (CORS)."""
        return bool(origin) and normal_origin(origin) in self.origins


def same_origin(origin: str, host: str) -> bool:
    """Whether a request's Origin is the server's own: the same host and port as the Host it was sent to."""
    own = normal_origin(origin)
    if own is None:
        return False
    parts = urlsplit(own)
    port = parts.port or {"http": 80, "https": 443}[parts.scheme]
    return host_name(host) == parts.hostname and _port(host, parts.scheme) == port


def _port(host: str, scheme: str) -> int:
    tail = host.rsplit("]", 1)[-1] if host.startswith("[") else host
    _, sep, port = tail.rpartition(":")
    try:
        return int(port) if sep else {"http": 80, "https": 443}[scheme]
    except ValueError:
        return -1


def check(request, policy: Policy) -> None:
    """Refuse (403) a request this server must not answer; called before every route."""
    host = request.headers.get("Host")
    if host is not None and not policy.host_ok(host):
        raise Refused(403, f"Host {host_name(host) or '(empty)'!s} is not this server's address; a reverse proxy "
                           "or another name must be allowed with `allowed_hosts`")
    if request.method in SAFE_METHODS:
        return
    origin = request.headers.get("Origin")
    own = origin is not None and same_origin(origin, host or "")
    if origin is not None and not own and not policy.cross_origin_ok(origin):
        raise Refused(403, f"Origin {origin[:100]} may not send requests to this server; only its own pages "
                           "and those named in `allowed_origins` may")
    if request.mimetype == "multipart/form-data" and not own and request.headers.get("Sec-Fetch-Site") != "same-origin":
        raise Refused(403, "an upload (multipart form) must come from this server's own page (its Origin header); "
                           "scripts send JSON with Content-Type: application/json")


def preflight(request, policy: Policy):
    """A CORS preflight's answer: 204 with the allowed methods and headers, or 403 for any other origin."""
    from flask import Response

    origin = request.headers.get("Origin")
    if not policy.cross_origin_ok(origin):
        raise Refused(403, f"Origin {str(origin)[:100]} is not in `allowed_origins`")
    response = Response(status=204)
    response.headers.update({"Access-Control-Allow-Methods": CORS_METHODS,
                             "Access-Control-Allow-Headers": CORS_HEADERS, "Access-Control-Max-Age": "600"})
    return response


def add_cors(request, response, policy: Policy):
    """Every answer to an allowed foreign origin carries its CORS headers, errors included (or the page sees
    an opaque network error instead of the message)."""
    origin = request.headers.get("Origin")
    if policy.cross_origin_ok(origin):
        response.headers["Access-Control-Allow-Origin"] = normal_origin(origin)
        response.headers["Access-Control-Expose-Headers"] = EXPOSED
    if policy.origins:
        response.vary.add("Origin")
    return response


def install(app, policy: Policy) -> None:
    """Check every request of ``app`` against ``policy``; answer preflights and add CORS headers."""
    from flask import request

    app.extensions["seg2sat_policy"] = policy

    @app.before_request
    def _guard():
        check(request, policy)
        if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method") and policy.origins:
            return preflight(request, policy)
        return None

    @app.after_request
    def _cors(response):
        return add_cors(request, response, policy)


def read_json(request, max_depth: int = MAX_DEPTH) -> Any:
    """The body as JSON: 415 unless sent as ``application/json``, 413 over the size limit (chunked too),
    400 for what is not JSON or nested deeper than ``max_depth``."""
    if not request.is_json:
        raise Refused(415, f"body: send JSON with Content-Type: application/json, got {request.mimetype or 'none'}")
    raw = request.get_data(cache=True)  # raises RequestEntityTooLarge (413) past MAX_CONTENT_LENGTH
    return parse_json(raw, max_depth)


def parse_json(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """JSON text -> value; :class:`Refused` (400) naming what is wrong, never RecursionError."""
    too_deep = Refused(400, f"body: JSON nested more than {max_depth} levels deep")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise too_deep from None
    except UnicodeDecodeError as exc:
        raise Refused(400, f"body: not valid JSON (not UTF-8 text at byte {exc.start})") from None
    except ValueError as exc:
        raise Refused(400, f"body: not valid JSON ({str(exc)[:120]})") from None
    if depth(data, max_depth) > max_depth:
        raise too_deep
    return data


def depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value (a scalar is 0), counted without recursion and stopping past ``limit``."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            level += 1
            deepest = max(deepest, level)
            if deepest > limit:
                return deepest
            stack.extend((v, level) for v in (item.values() if isinstance(item, dict) else item))
    return deepest
