"""The Tasks API's bearer tokens: JWTs signed with HS256, verified with the standard library.

Only ``alg: HS256`` is accepted (``none`` and every other algorithm are refused, so a token
cannot choose how it is checked). Each of the three parts must be canonical base64url (RFC
7515: the URL-safe alphabet, no padding, no stray bits), so one token has exactly one
spelling. The signature is compared in constant time; ``exp`` is required (unless the
gateway allows tokens without one) and, like ``nbf`` when present, checked with a small
leeway; ``iss`` and ``aud`` must match when the gateway is configured with them. The claims
the API uses:

``sub`` (required)
    the owner of the tasks: every task is the owner's, and another owner's task is a 404.
    An API key's owner id (``key_…``) here sees that key's jobs, and the other way round.
``tenant`` (optional)
    the tenant the token acts for: it is the default ``origin_tenant_id`` of new tasks, and
    the token sees and creates only that tenant's tasks.
``providers`` (optional)
    the provider types the token may run tasks on (``["sandbox", "fal"]``); all when absent.
``fal_apps`` (optional)
    glob patterns of the fal apps the token may name in ``fal_app_id`` (``["fal-ai/flux/*"]``);
    whatever ``BACKSERV_TASKS_FAL_APPS`` and the catalog allow when absent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import AuthenticationFailed

MAX_TOKEN_LENGTH = 8192
MAX_CLAIM_LENGTH = 256
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Claims:
    sub: str
    tenant: str | None = None
    providers: frozenset[str] | None = None
    fal_apps: frozenset[str] | None = None


class TokenRejected(AuthenticationFailed):
    """401 with the reason; the Tasks API renders it as ``{"detail": ...}``."""


def _b64decode(part: str) -> bytes:
    """Strict base64url: the URL-safe alphabet only, unpadded, and canonical (the bits a last
    character carries beyond the data are zero), so that re-encoding gives ``part`` back."""
    if not _BASE64URL.fullmatch(part) or len(part) % 4 == 1:
        raise ValueError("not unpadded base64url")
    data = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii") != part:
        raise ValueError("not canonical base64url")
    return data


def _segment(part: str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(_b64decode(part))
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        raise TokenRejected(
            f"Invalid token: its {what} is not JSON encoded as unpadded, canonical base64url."
        ) from None
    if not isinstance(value, dict):
        raise TokenRejected(f"Invalid token: its {what} is not a JSON object.")
    return value


def _text_claim(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_CLAIM_LENGTH:
        raise TokenRejected(
            f"Invalid token: the '{name}' claim must be a string of 1 to {MAX_CLAIM_LENGTH} "
            "characters."
        )
    return value


class JWTVerifier:
    def __init__(
        self,
        secret: str,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = 30.0,
        require_exp: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret.encode()
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.require_exp = require_exp
        self._clock = clock

    def authenticate(self, header: str | None) -> Claims:
        """The claims of the ``Authorization: Bearer <jwt>`` header, or ``TokenRejected``."""
        if not header:
            raise TokenRejected("Not authenticated")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise TokenRejected("The Authorization header must be 'Bearer <token>'.")
        return self.verify(token)

    def verify(self, token: str) -> Claims:
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenRejected("Invalid token: it is too long.")
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenRejected("Invalid token: a JWT has three dot-separated parts.")
        header = _segment(parts[0], "header")
        if header.get("alg") != "HS256":
            raise TokenRejected(
                f"Invalid token: algorithm {header.get('alg')!r} is not accepted; only HS256 is."
            )
        if "crit" in header:
            raise TokenRejected("Invalid token: critical header extensions are not supported.")
        try:
            signature = _b64decode(parts[2])
        except (ValueError, binascii.Error):
            raise TokenRejected(
                "Invalid token: the signature is not unpadded, canonical base64url."
            ) from None
        signed = f"{parts[0]}.{parts[1]}".encode("ascii", "replace")
        expected = hmac.new(self._secret, signed, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, signature):
            raise TokenRejected("Invalid token: the signature does not match.")
        claims = _segment(parts[1], "payload")
        self._check_times(claims)
        if self.issuer is not None and claims.get("iss") != self.issuer:
            raise TokenRejected("Invalid token: it was not issued by the expected issuer.")
        if self.audience is not None:
            aud = claims.get("aud")
            audiences = aud if isinstance(aud, list) else [aud]
            if self.audience not in audiences:
                raise TokenRejected("Invalid token: it is not meant for this audience.")
        sub = _text_claim(claims, "sub")
        if sub is None:
            raise TokenRejected("Invalid token: the 'sub' claim (the owner) is missing.")
        return Claims(
            sub=sub,
            tenant=_text_claim(claims, "tenant"),
            providers=self._names(claims.get("providers"), "providers", lower=True),
            fal_apps=self._names(claims.get("fal_apps"), "fal_apps", lower=False),
        )

    def _check_times(self, claims: dict[str, Any]) -> None:
        now = self._clock()
        for name in ("exp", "nbf"):
            value = claims.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise TokenRejected(f"Invalid token: the '{name}' claim must be a number.")
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if exp is None and self.require_exp:
            raise TokenRejected("Invalid token: token has no exp claim; every token must expire.")
        if exp is not None and now > exp + self.leeway:
            raise TokenRejected("Token has expired.")
        if nbf is not None and now + self.leeway < nbf:
            raise TokenRejected("Token is not valid yet (nbf).")

    @staticmethod
    def _names(value: Any, claim: str, *, lower: bool) -> frozenset[str] | None:
        if value is None:
            return None
        if not isinstance(value, list) or not all(
            isinstance(p, str) and len(p) <= MAX_CLAIM_LENGTH for p in value
        ):
            raise TokenRejected(f"Invalid token: the '{claim}' claim must be a list of names.")
        return frozenset(p.lower() if lower else p for p in value)
