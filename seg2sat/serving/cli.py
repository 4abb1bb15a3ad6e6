"""``seg2sat serve``: its options only, so ``seg2sat --help`` imports no model code.

The server itself (:mod:`.server`, :mod:`.service`) is imported when the command runs. Every option
is a field of :class:`seg2sat.settings.Settings` and reads its SEG2SAT_* variable too.
"""

from __future__ import annotations

from ..cli_errors import CommandError
from ..options import add_backend_option, add_engine_options, overrides, print_engine_notes, spell
from ..settings import Settings

SERVE_BACKENDS = ("diffusion", "procedural", "local")
"""What ``--backend`` takes (local = diffusion); remote is the web UI's, refused with the reason."""


def register(sub) -> None:
    """The ``seg2sat serve`` sub-command (listed in seg2sat.cli.COMMANDS)."""

    d = Settings()
    p = sub.add_parser("serve", help="local HTTP server speaking the Inference Endpoints protocol",
                       description="Serve Seg2Sat on GET /health, POST / and POST /predict with the same JSON "
                       "protocol as the Hugging Face endpoint handler (see endpoint/README.md), through waitress; "
                       "huggingface_hub's InferenceClient (text_to_image, image_to_image) and Drawing2Map's payload "
                       "work too. "
                       "One generation at a time; up to --queue-size requests wait, more get 503. "
                       "Every option also reads a SEG2SAT_* environment variable.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help=f"largest image in pixels (SEG2SAT_MAX_PIXELS, default {d.max_pixels})")
    p.add_argument("--queue-size", type=int, default=None,
                   help=f"requests that may wait (SEG2SAT_QUEUE_SIZE, default {d.queue_size})")
    p.add_argument("--max-body-mb", type=float, default=None,
                   help=f"largest request body (SEG2SAT_MAX_BODY_MB, default {d.max_body_mb:g})")
    add_backend_option(p, checked=False, env=True)
    p.add_argument("--lazy", action="store_true", help="load the model on the first request instead of at start "
                   "(with --backend procedural, no model is loaded until a request asks for diffusion)")
    p.add_argument("--allowed-hosts", nargs="+", default=None, metavar="HOST",
                   help="more Host names to answer besides localhost, 127.0.0.1, [::1] and --host, e.g. a reverse "
                   "proxy's (SEG2SAT_ALLOWED_HOSTS); other Hosts get 403 (DNS rebinding)")
    p.add_argument("--allowed-origins", nargs="+", default=None, metavar="ORIGIN",
                   help="web pages that may call the server from a browser, e.g. http://localhost:3000 "
                   "(SEG2SAT_ALLOWED_ORIGINS): they get CORS answers; other pages get 403")
    add_engine_options(p, env=True)
    p.set_defaults(func=_cmd_serve)


def _joined(values: list[str] | None) -> str | None:
    """Options given as several words (or one comma list) -> the variable's spelling, "a b"."""
    return None if values is None else " ".join(values)


def _cmd_serve(args) -> None:
    from . import NOT_REMOTE, Service, create_app, make_server

    if args.backend == "remote":
        raise CommandError(f"--backend remote: {NOT_REMOTE}; use diffusion or procedural")
    if args.backend is not None and args.backend not in SERVE_BACKENDS:
        raise CommandError(f"--backend: must be diffusion or procedural, got {args.backend!r}")
    try:
        settings = Settings.from_env(max_pixels=args.max_pixels, queue_size=args.queue_size,
                                     max_body_mb=args.max_body_mb, backend=args.backend,
                                     allowed_hosts=_joined(args.allowed_hosts),
                                     allowed_origins=_joined(args.allowed_origins), **overrides(args))
        service = Service(settings)
        app = create_app(settings, service)
    except ValueError as exc:  # a bad SEG2SAT_* value or a malformed --allowed-origins: variable and flag named
        raise CommandError(spell(str(exc), "server")) from None
    if not args.lazy and settings.backend == "diffusion":
        print(f"loading {settings.model or 'the default model'} …", flush=True)
        print_engine_notes(service.engine.load())  # loaded now, so the first request is not the slow one
    server = make_server(app, host=args.host, port=args.port)
    print(f"serving on http://{args.host}:{server.effective_port}  (POST / or /predict, GET /health; Ctrl+C stops)",
          flush=True)
    try:
        server.run()
    finally:
        server.close()
