"""Who may read and change what, and the headers every response carries.

- Reads are open (loopback by default) unless ``require_auth``: then they need the bearer
  token or the trusted proxy's user header, like changes and dump downloads.
- A change (triage state) needs the token when one is configured — ``Authorization: Bearer``
  or the form's ``token`` field — or the proxy's user header, and must pass a same-origin
  check: a browser's ``Origin`` (or, without it, ``Referer``) must name this server. A client
  sending neither is accepted only with the token in its ``Authorization`` header (a browser
  cannot forge that header cross-site).
- The Content-Security-Policy allows scripts, styles and images from this server only: no
  inline script, no ``eval``, no inline style.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSP", "Access", "AccessDenied", "SecurityHeaders"]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """ASGI middleware adding :data:`CSP` and friends to every HTTP response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in _HEADERS if k not in have]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class AccessDenied(Exception):
    """``status`` 401 (who are you?) or 403 (not from here / not allowed), with a reason."""

    def __init__(self, status: int, reason: str):
        self.status = status
        super().__init__(reason)


@dataclass(frozen=True)
class Access:
    """The access rules of one deployment (from ``[web]``)."""

    token: str = ""
    proxy_user_header: str = ""
    require_auth: bool = False

    def user(self, headers: Headers, form_token: str | None = None) -> str | None:
        """The authenticated user: the proxy's user name, ``token`` for a valid token, or
        None."""
        if self.proxy_user_header:
            name = headers.get(self.proxy_user_header, "").strip()
            if name:
                return name[:255]
        if self.token:
            given = form_token or ""
            auth = headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if given and hmac.compare_digest(given.encode(), self.token.encode()):
                return "token"
        return None

    @property
    def configured(self) -> bool:
        return bool(self.token or self.proxy_user_header)

    def check_read(self, headers: Headers) -> None:
        if self.require_auth and self.configured and self.user(headers) is None:
            raise AccessDenied(401, "this server needs a bearer token or the proxy's user "
                                    "header to read")

    def check_download(self, headers: Headers) -> None:
        if self.configured and self.user(headers) is None:
            raise AccessDenied(401, "downloading a dump needs the bearer token or the "
                                    "proxy's user header")

    def check_change(self, headers: Headers, *, host_url: str,
                     form_token: str | None = None) -> str | None:
        """Raise :class:`AccessDenied` unless a change is allowed; returns the user (None
        when no authentication is configured)."""
        origin = headers.get("origin") or headers.get("referer")
        bearer = headers.get("authorization", "").lower().startswith("bearer ")
        if origin:
            if not _same_origin(origin, host_url):
                raise AccessDenied(403, "cross-origin change refused (Origin/Referer is not "
                                        "this server)")
        elif not (bearer and self.token and self.user(headers) == "token"):
            raise AccessDenied(403, "change refused: no Origin or Referer header (send the "
                                    "bearer token in Authorization from scripts)")
        user = self.user(headers, form_token)
        if self.configured and user is None:
            raise AccessDenied(401, "changing triage state needs the bearer token or the "
                                    "proxy's user header")
        return user


def _same_origin(origin: str, host_url: str) -> bool:
    a, b = urlsplit(origin), urlsplit(host_url)
    return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())
