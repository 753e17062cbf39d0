"""Bearer-token checks, answering with the codes the vendor's SDK is known to meet."""

import hashlib

from .config import EmulatorConfig
from .wire import VendorError


def token_hash(token: str) -> str:
    """What the ledger and the config view show instead of a token: never the token itself."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``authorization: Bearer <token>`` header (scheme case-insensitive).

    A header with another scheme yields the whole header as the token, so it is refused as an
    invalid token rather than as a missing one: the caller did send a credential.
    """
    if authorization is None or not authorization.strip():
        return None
    scheme, _, rest = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip() or None
    return authorization.strip()


def check_token(token: str | None, config: EmulatorConfig) -> str:
    """The token if it may call the API; else raise the vendor's 401/403 answer."""
    if token is None:
        raise VendorError(401, "no_token", "token is required", "no_token")
    if token in config.expired_tokens:
        raise VendorError(401, "token_expired", "token has expired", "token_expired")
    if token in config.used_up_tokens:
        raise VendorError(403, "used_up", "balance is used up", "used_up")
    if token in config.disabled_tokens:
        raise VendorError(403, "disabled", "service is disabled for this token", "disabled")
    if token not in config.tokens:
        raise VendorError(401, "invalid_token", "token is invalid", "invalid_token")
    return token
