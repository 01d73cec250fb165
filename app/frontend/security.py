"""Who may call what: optional API keys, CORS, and the headers that make the pages safe to expose.

With API_KEYS (or API_KEYS_FILE) set, predict, /models and /metrics need
``Authorization: Bearer <key>``; the health probes, the page, the docs and the OpenAPI document
stay open (the page and Swagger UI ask for the key). Keys are compared in constant time and
never logged.
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


def needs_key(path: str) -> bool:
    """Whether a path is one the API keys guard (the probes and the docs stay open)."""
    return path.startswith(("/predict/", "/models/")) or path in ("/models", "/metrics")


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
    """CSP, nosniff, no referrer and no framing on every response but predict's (the hot path
    answers JSON only, and its lean handler skips this)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope).startswith("/predict/"):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)
