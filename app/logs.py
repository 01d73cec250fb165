"""One log format for every process of the service (launcher, frontend workers, model owner)."""

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure() -> None:
    """Log INFO and up to stderr in the service's format (a no-op if logging is set up)."""
    logging.basicConfig(level=logging.INFO, format=FORMAT)
