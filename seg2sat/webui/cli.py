"""``seg2sat ui`` (and ``python ui/start_webui.py``): start the web UI and print its URL."""

from __future__ import annotations

import argparse

from ..options import add_backend_option, add_engine_options, overrides
from ..settings import Settings
from .config import UI_DEFAULTS


def add_arguments(p: argparse.ArgumentParser) -> None:
    shared = Settings()
    add_backend_option(p, remote=True, env=True)
    p.add_argument("--endpoint-url", default=None, help="remote backend: the endpoint URL (env SEG2SAT_ENDPOINT_URL)")
    p.add_argument("--token-env", default=None,
                   help=f"remote backend: the environment variable holding the token (default "
                        f"{shared.endpoint_token_env}, then HF_TOKEN; env SEG2SAT_ENDPOINT_TOKEN_ENV)")
    p.add_argument("--host", default=None, help=f"address to listen on (default {UI_DEFAULTS['HOST']}; 0.0.0.0 opens "
                                                "it to the network; env SEG2SAT_UI_HOST)")
    p.add_argument("--port", type=int, default=None,
                   help=f"port (default {UI_DEFAULTS['PORT']}; 0 picks a free one; env SEG2SAT_UI_PORT)")
    p.add_argument("--allowed-hosts", nargs="+", default=None, metavar="HOST",
                   help="more Host names to answer besides localhost, 127.0.0.1, [::1] and --host, e.g. a reverse "
                        "proxy's (env SEG2SAT_ALLOWED_HOSTS); other Hosts get 403 (DNS rebinding)")
    add_engine_options(p, env=True)
    p.add_argument("--queue-size", type=int, default=None,
                   help=f"jobs that may wait for the device while one runs (default {shared.queue_size}; "
                        "env SEG2SAT_QUEUE_SIZE)")
    add_osm_service_arguments(p)


def add_osm_service_arguments(p: argparse.ArgumentParser) -> None:
    """The OpenStreetMap services behind "Start from a place" (osm-mask's spellings, the UI's variables).

    Only the services: how a place becomes a mask is the page's to choose, not an option here."""
    g = p.add_argument_group("Start from a place (OpenStreetMap)")
    g.add_argument("--overpass-url", default=None, metavar="URL",
                   help=f"Overpass API server (default {UI_DEFAULTS['OVERPASS_URL']}; env SEG2SAT_UI_OVERPASS_URL)")
    g.add_argument("--nominatim-url", default=None, metavar="URL",
                   help="Nominatim server for addresses (default the public OSM one, 1 request/s; "
                        "env SEG2SAT_UI_NOMINATIM_URL)")
    g.add_argument("--user-agent", default=None,
                   help="identifies you to Overpass and Nominatim, as their usage policies ask "
                        "(env SEG2SAT_UI_USER_AGENT)")
    g.add_argument("--osm-cache-dir", default=None, metavar="DIR",
                   help="where Overpass answers and geocoded places are kept (default ~/.cache/seg2sat/osm, "
                        "shared with osm-mask; env SEG2SAT_UI_OSM_CACHE_DIR)")


def config_from_args(args: argparse.Namespace) -> dict:
    """Only the options given on the command line; the rest comes from the environment or the defaults."""
    pairs = {"BACKEND": args.backend, "ENDPOINT_URL": args.endpoint_url, "ENDPOINT_TOKEN_ENV": args.token_env, "HOST": args.host,
             "PORT": args.port, "QUEUE_SIZE": args.queue_size,
             "OVERPASS_URL": args.overpass_url, "NOMINATIM_URL": args.nominatim_url, "USER_AGENT": args.user_agent,
             "OSM_CACHE_DIR": args.osm_cache_dir,
             "ALLOWED_HOSTS": " ".join(args.allowed_hosts) if args.allowed_hosts else None,
             **{k.upper(): v for k, v in overrides(args).items()}}
    return {k: v for k, v in pairs.items() if v is not None}


UI_THREADS = 6
"""Requests handled at once (imports, previews, places); jobs run on their own worker. A few threads bound the
memory of concurrent requests; waitress holds further connections (slow ones too) without a thread each."""


def serve(config: dict) -> None:
    """Build the app, listen (waitress, with the connection limits of seg2sat.serving.connections), print the URL,
    serve until Ctrl+C."""
    from ..serving.connections import make_waitress
    from . import create_app

    app = create_app(config)
    try:
        server = make_waitress(app, str(app.config["HOST"]), int(app.config["PORT"]), UI_THREADS,
                               app.extensions["seg2sat_ui"].settings.max_body_bytes)
    except OSError as exc:
        raise ValueError(f"cannot listen on {app.config['HOST']}:{app.config['PORT']} ({exc.strerror or exc}); "
                         "pick another --port") from None
    host = "localhost" if app.config["HOST"] in ("127.0.0.1", "0.0.0.0", "::") else app.config["HOST"]
    print(f"Drawing2Map is running at http://{host}:{server.effective_port}/ "
          f"(backend: {app.extensions['seg2sat_ui'].settings.backend}; Ctrl+C to stop)", flush=True)
    try:
        server.run()
    finally:
        server.close()
        app.extensions["seg2sat_ui"].worker.close()


def register(sub) -> None:
    p = sub.add_parser("ui", help="start the Drawing2Map web UI in the browser",
                       description="Draw a land-cover map in the browser and turn it into aerial images. "
                       "Prints the URL to open. Every option can also be set with the environment variable named in its "
                       "help: the SEG2SAT_* settings shared with `seg2sat serve`, SEG2SAT_UI_* for the UI's own.")
    add_arguments(p)
    p.set_defaults(func=lambda args: serve(config_from_args(args)))
