"""``python -m accessctl_local serve``: deploy the template locally and keep serving until Ctrl-C.

``python -m accessctl_local demo``: run the scripted scenario (see demo.py).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from .stack import LocalStack


def _parameter(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected Name=Value, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:
        from .demo import main as demo_main

        return demo_main(argv[1:])
    parser = argparse.ArgumentParser(prog="accessctl_local", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="deploy template.yaml into the emulator and serve it")
    serve.add_argument("--project-root", type=Path, default=Path.cwd())
    serve.add_argument("--template", type=Path, default=Path("template.yaml"))
    serve.add_argument("--api-port", type=int, default=3000)
    serve.add_argument("--emulator-port", type=int, default=5000)
    serve.add_argument("--region", default="us-east-1")
    serve.add_argument("--stack-name", default="accessctl-local")
    serve.add_argument(
        "--parameter",
        "-p",
        type=_parameter,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="template parameter override (repeatable)",
    )
    serve.add_argument(
        "--schedule-interval",
        type=float,
        default=None,
        help="run every schedule at this interval in seconds instead of its rate",
    )
    serve.add_argument("--no-schedules", action="store_true", help="do not run schedules in the background")
    serve.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with LocalStack.start(
        project_root=args.project_root,
        template=args.template,
        parameter_overrides=dict(args.parameter),
        stack_name=args.stack_name,
        region=args.region,
        api_port=args.api_port,
        emulator_port=args.emulator_port,
        run_schedules=not args.no_schedules,
        schedule_interval=args.schedule_interval,
    ) as stack:
        # From here Ctrl-C only asks to stop: a KeyboardInterrupt raised mid-print would skip the
        # clean shutdown (the stack's own exit) and end the process with a traceback.
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        print(stack.describe(), flush=True)
        print("\nServing; Ctrl-C to stop.", flush=True)
        while not stop.wait(1.0):
            pass
        print("Stopping...", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
