"""Who may call what: optional API keys, CORS, and the headers that make the pages safe to expose.

With API_KEYS (or API_KEYS_FILE) set, predict, /models, /metrics and the v2 protocol's metadata
and inference need ``Authorization: Bearer <key>``; the health probes (the v2 ones too), the
page, the docs and the OpenAPI document stay open (the page and Swagger UI ask for the key).
Keys are compared in constant time and never logged.
"""

import hmac

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.failures import Failure
from app.frontend.problems import problem_response

REALM = 'Bearer realm="mnist-zoo"'
# No inline script anywhere: the page, Swagger UI and ReDoc load theirs from the service.
# Inline styles stay allowed: Swagger UI and ReDoc set them from their scripts.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


def route_path(scope: Scope) -> str:
    """The path without the root_path a proxy serves the service under."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _v2_probe(path: str) -> bool:
    """The v2 protocol's health paths: /v2/health/*, /v2/models/<m>[/versions/<v>]/ready."""
    parts = path.split("/")
    if parts[1:3] == ["v2", "health"]:
        return True
    model_ready = len(parts) == 5 or (len(parts) == 7 and parts[4] == "versions")
    return parts[1:3] == ["v2", "models"] and parts[-1] == "ready" and model_ready


def needs_key(path: str) -> bool:
    """Whether a path is one the API keys guard (the probes and the docs stay open)."""
    if path == "/v2" or path.startswith("/v2/"):  # metadata and inference; not its probes
        return not _v2_probe(path)
    return path.startswith(("/predict/", "/models/")) or path in ("/models", "/metrics")


def lean(path: str) -> bool:
    """The inference paths, whose lean handlers answer JSON or tensors only."""
    return path.startswith("/predict/") or (path.startswith("/v2/") and path.endswith("/infer"))


def _bearer(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else b""
    return None


class ApiKeyMiddleware:
    """401 problem+json, before any of the body reaches the app, for a guarded path without a valid
    key (the body guards outside drop the rest of the body first)."""

    def __init__(self, app: ASGIApp, keys: tuple[bytes, ...]) -> None:
        self.app, self.keys = app, keys

    def valid(self, token: bytes) -> bool:
        """Constant time, whichever key matches (or none): every key is compared."""
        matches = [hmac.compare_digest(token, key) for key in self.keys]
        return any(matches)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not needs_key(route_path(scope)):
            await self.app(scope, receive, send)
            return
        token = _bearer(scope)
        if token is not None and self.valid(token):
            await self.app(scope, receive, send)
            return
        detail = (
            "this service needs an API key: send Authorization: Bearer <key>"
            if token is None
            else "the API key is not valid"
        )
        challenge = REALM if token is None else f'{REALM}, error="invalid_token"'
        response = problem_response(Failure.UNAUTHORIZED.error(detail))
        response.headers["WWW-Authenticate"] = challenge
        await response(scope, receive, send)


class SecurityHeadersMiddleware:
    """CSP, nosniff, no referrer and no framing on every response but the inference paths'
    (the hot paths answer JSON or tensors only, and their lean handlers skip this)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or lean(route_path(scope)):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)
