"""Running the emulator: parse the command line, build the app, serve it with uvicorn."""

import logging

import uvicorn

from .config import parse_args
from .server import create_app

BACKLOG = 4096
"""Listen backlog: bursts of thousands of connections must queue, not be refused."""

KEEP_ALIVE_S = 30
"""Idle keep-alive: long enough for clients that pool connections between slow calls."""

GRACEFUL_SHUTDOWN_S = 3
"""How long a stop waits for open calls: hangs last an hour and must not block a restart."""


def main(argv: list[str] | None = None) -> None:
    """`python -m faceswap_jobs.emulator [options]`: serve until interrupted."""
    config = parse_args(argv)
    level = "DEBUG" if config.log_level == "trace" else config.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":
        # httpx logs every image fetch at INFO: thousands of lines per soak, none of them news.
        logging.getLogger("httpx").setLevel(logging.WARNING)
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        backlog=BACKLOG,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        access_log=False,
        lifespan="on",
        log_level=config.log_level,
    )
