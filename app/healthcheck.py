"""`python -m app.healthcheck [URL]`: exit 0 while the service answers 200 on /health/ready.

The image's HEALTHCHECK (docker-compose.yml relies on it): the one copy of the check.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

READY_URL = "http://127.0.0.1:8000/health/ready"
# Under the HEALTHCHECK's --timeout=5s, so a hung service fails here rather than being killed.
TIMEOUT_S = 4.0


def ready(url: str = READY_URL, timeout_s: float = TIMEOUT_S) -> bool:
    """Whether ``url`` answers 200 within ``timeout_s``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    """Exit status for a container health check: 0 ready, 1 not."""
    args = sys.argv[1:] if argv is None else argv
    return 0 if ready(args[0] if args else READY_URL) else 1


if __name__ == "__main__":
    sys.exit(main())
