"""``gream serve``: load a model, its index and catalogue once, then answer HTTP requests.

Settings are the ``eval`` config (prompt template, beams, max_history, reasoning defaults,
device) plus its ``serve`` section (defaults and comments in ``configs/eval.yaml``); flags set the common ones and
``key=value`` overrides the rest, e.g. ``serve.max_batch=1 beams=10``.
"""

from __future__ import annotations

import argparse

SERVE_FLAGS = ("host", "port", "max_batch", "max_wait_ms")  # flags that set keys of the `serve` section


def serve_config(args: argparse.Namespace):
    """The ``eval`` config with flags, a ``serve`` section and the ``key=value`` overrides."""
    from gream_verl.config import load_config

    serve = {k: getattr(args, k) for k in SERVE_FLAGS if getattr(args, k, None) is not None}
    return load_config("eval", args.config, args.overrides, model=args.model, data=args.data, index=args.index,
                       device=args.device, beams=args.beams, max_history=args.max_history, engine=args.engine,
                       serve=serve or None)  # fmt: skip


def serve(args: argparse.Namespace) -> None:
    try:
        import uvicorn

        from gream_verl.serve.app import create_app
    except ImportError as e:
        raise RuntimeError(f"gream serve needs FastAPI and uvicorn ({e}): pip install 'gream-verl[serve]'") from None
    from gream_verl.serve.recommender import Recommender

    cfg = serve_config(args)
    s = cfg.serve
    if not 0 <= int(s.port) <= 65535:
        raise ValueError(f"--port must be between 0 and 65535, got {s.port}")
    app = create_app(Recommender.load(cfg), s)
    config = uvicorn.Config(app, host=str(s.host), port=int(s.port), log_level=str(s.log_level),
                            timeout_graceful_shutdown=int(s.graceful_timeout_s), timeout_keep_alive=int(s.keep_alive_s),
                            access_log=False)  # fmt: skip
    uvicorn.Server(config).run()


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="HTTP recommendation service (FastAPI): POST /v1/recommend, batched constrained decoding",
        description="Load a model, its item index and catalogue once and serve recommendations over HTTP "
        "(OpenAPI docs at /docs). Direct-mode requests arriving together share one decoder call.",
    )
    p.add_argument("--model", required=True, help="HF model folder (vocabulary extended with the index tokens)")
    p.add_argument("--index", required=True, help="X.index.json")
    p.add_argument("--data", required=True, help="LC-Rec dataset (catalogue titles, ASINs)")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--max-batch", dest="max_batch", type=int, default=None,
                   help="direct requests per decoder call (default 32; 1 = no batching)")  # fmt: skip
    p.add_argument("--max-wait-ms", dest="max_wait_ms", type=float, default=None,
                   help="how long a batch waits to fill up (default 5)")  # fmt: skip
    p.add_argument("--beams", type=int, default=None, help="beam width = the largest k (default 20)")
    p.add_argument("--max-history", dest="max_history", type=int, default=None,
                   help="longer histories are cut to the most recent items (default 20)")  # fmt: skip
    p.add_argument("--engine", default=None, help="auto (item decoder) | hf (generate(), for comparison); default: eval.yaml engine")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:1")
    p.add_argument("--config", default=None, help="YAML merged over gream_verl/configs/eval.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. serve.max_queue=256 reason.temperature=1.0")
    p.set_defaults(func=serve)
