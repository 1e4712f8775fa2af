"""``python -m reference_server``: run the reference server, or mint a token for local use.

The first line on stdout is ``listening on ws://HOST:PORT/PATH`` so a launcher can read the
URL (with ``--port 0`` the port is picked by the system). Secrets come from the environment:
REFERENCE_SERVER_AUTH_SECRET (the token signing secret) and REFERENCE_SERVER_ADMIN_TOKEN
(the admin channel, which exists only with --virtual-clock).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from reference_server import auth
from reference_server.app import ReferenceServer
from reference_server.config import ServerConfig
from reference_server.faults import PLANTED_FAULTS
from reference_server.protocol import SessionConfig
from reference_server.protocol.messages import Heartbeat, Limits, Windows

SECRET_ENV = "REFERENCE_SERVER_AUTH_SECRET"
ADMIN_ENV = "REFERENCE_SERVER_ADMIN_TOKEN"
DEV_SECRET = "dev-secret-change-me-0123456789abcdef"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reference_server", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    mint = sub.add_parser(
        "mint-token", help="print a signed user token (secret from the environment)"
    )
    mint.add_argument("--user", required=True)
    mint.add_argument("--ttl", type=float, default=3600.0, help="seconds (default 3600)")

    a = parser.add_argument
    a("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    a("--port", type=int, default=0, help="port; 0 picks a free one (default)")
    a("--path", default="/ws", help="WebSocket path (default /ws)")
    a(
        "--store",
        default="sqlite:reference_server.db",
        help="memory, sqlite:PATH (default sqlite:reference_server.db), or redis://HOST:PORT/DB "
        "(a node of a cluster sharing that Redis: docs/cluster.md)",
    )
    a("--node-id", default=None, help="with a Redis store: this node's id (default HOST-PID)")
    a("--virtual-clock", action="store_true", help="enable the admin channel that advances time")
    a(
        "--clock-offset",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="with --virtual-clock: start that far ahead of the wall clock (a restarted process "
        "going on from the virtual time its predecessor had reached)",
    )
    a(
        "--trusted-proxy",
        action="append",
        default=[],
        help="address or network whose X-Forwarded-For is believed",
    )
    a(
        "--forwarded-header",
        choices=["x-forwarded-for", "forwarded"],
        default="x-forwarded-for",
        help="where trusted proxies report client addresses (RFC 7239 Forwarded, or not)",
    )
    a("--ip-policy", choices=["allow", "require_reauth", "deny"], default="allow")
    a("--reauth-max-age", type=float, default=60.0, help="seconds a credential counts as fresh")
    a("--full-window", type=float, default=30.0, help="seconds of full replay after a drop")
    a("--resumable-window", type=float, default=300.0, help="seconds a session survives a drop")
    a("--heartbeat-interval", type=float, default=10.0)
    a("--heartbeat-timeout", type=float, default=30.0)
    a("--replay-buffer", type=int, default=1024, help="numbered messages kept for replay")
    a(
        "--request-ids-kept",
        type=int,
        default=1024,
        help="client seqs whose request ids are remembered for deduplication (default 1024)",
    )
    a("--max-frame-bytes", type=int, default=64 * 1024)
    a("--max-frames-per-s", type=float, default=1000.0, help="flood limit per connection")
    a("--frame-burst", type=int, default=2000, help="frames allowed in a burst")
    a(
        "--handshake-timeout",
        type=float,
        default=10.0,
        help="seconds a connection has to finish its opening handshake (default 10)",
    )
    a(
        "--max-connections",
        type=int,
        default=20_000,
        help="open connections beyond which handshakes get HTTP 503 (default 20000)",
    )
    a(
        "--max-sessions",
        type=int,
        default=None,
        help="sessions held beyond which a hello is rejected as overloaded (default: no limit)",
    )
    a(
        "--overload-retry-after",
        type=int,
        default=1000,
        help="milliseconds sent as the retry hint of overload answers (default 1000)",
    )
    a("--chunk-delay", type=float, default=0.005, help="seconds between streamed reply chunks")
    a("--log-format", choices=["text", "json"], default="text")
    a("--log-level", default="INFO")
    a(
        "--plant-fault",
        choices=PLANTED_FAULTS,
        help="break one protocol rule on purpose (harness tests)",
    )
    return parser


def config_from(args: argparse.Namespace) -> ServerConfig:
    """Build the server configuration from parsed arguments and the environment."""
    return ServerConfig(
        host=args.host,
        port=args.port,
        path=args.path,
        store=args.store,
        node_id=args.node_id,
        virtual_clock=args.virtual_clock,
        clock_offset_s=args.clock_offset,
        auth_secret=os.environ.get(SECRET_ENV, DEV_SECRET),
        admin_token=os.environ.get(ADMIN_ENV),
        trusted_proxies=tuple(args.trusted_proxy),
        forwarded_header=args.forwarded_header,
        reauth_max_age_s=args.reauth_max_age,
        chunk_delay_s=args.chunk_delay,
        max_frames_per_s=args.max_frames_per_s,
        frame_burst=args.frame_burst,
        handshake_timeout_s=args.handshake_timeout,
        max_connections=args.max_connections,
        max_sessions=args.max_sessions,
        overload_retry_after_ms=args.overload_retry_after,
        log_format=args.log_format,
        planted_fault=args.plant_fault,
        session=SessionConfig(
            windows=Windows(full_s=args.full_window, resumable_s=args.resumable_window),
            heartbeat=Heartbeat(
                interval_s=args.heartbeat_interval, timeout_s=args.heartbeat_timeout
            ),
            limits=Limits(
                max_frame_bytes=args.max_frame_bytes, replay_buffer_max=args.replay_buffer
            ),
            ip_policy=args.ip_policy,
            request_ids_kept=args.request_ids_kept,
        ),
    )


def _configure_logging(fmt: str, level: str) -> None:
    if fmt == "json":
        pattern = (
            '{"time":"%(asctime)s","level":"%(levelname)s",'
            '"logger":"%(name)s","message":"%(message)s"}'
        )
    else:
        pattern = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level.upper(), format=pattern, stream=sys.stderr)
    # websockets logs "connection open" and "connection closed" at INFO for every connection:
    # two formatted lines and two writes per client, 10,000 of each in a reconnect storm (the
    # storm profile, docs/performance.md). Its warnings and errors still show; --log-level
    # DEBUG brings its lines back.
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("websockets").setLevel(logging.WARNING)


async def _serve(config: ServerConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with ReferenceServer(config) as server:
        print(f"listening on {server.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m reference_server`` and ``reference-server``."""
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.clock_offset and not args.virtual_clock) or args.clock_offset < 0:
        parser.error("--clock-offset needs --virtual-clock and a number of seconds >= 0")
    if args.command == "mint-token":
        print(auth.mint(args.user, os.environ.get(SECRET_ENV, DEV_SECRET), ttl_s=args.ttl))
        return 0
    _configure_logging(args.log_format, args.log_level)
    config = config_from(args)
    if config.auth_secret == DEV_SECRET:
        logging.getLogger("reference_server").warning(
            "%s is not set: using the development secret; never do this outside a test", SECRET_ENV
        )
    if config.virtual_clock and not config.admin_token:
        logging.getLogger("reference_server").warning(
            "--virtual-clock without %s: the admin channel stays closed", ADMIN_ENV
        )
    asyncio.run(_serve(config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
