"""Who is calling: a Bearer key from radiance.yaml or the database, or the admin key.

`/metrics` is for the admin key or `server.metrics_key` only; both are kept as hashes.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

from appliance.errors import Unauthorized
from appliance.state.keys import ApiKey, KeyStore, hash_secret

ADMIN_KEY_ID = "admin"


@dataclass(frozen=True)
class Authenticator:
    keys: KeyStore
    admin_hash: str | None
    metrics_hash: str | None = None

    def secret(self, header: str | None) -> str:
        if not header:
            raise Unauthorized(
                "You didn't provide an API key. Send it as `Authorization: Bearer <key>`."
            )
        scheme, _, secret = header.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise Unauthorized("Send the API key as `Authorization: Bearer <key>`.")
        return secret

    def bearer(self, header: str | None) -> ApiKey:
        """The key a request presents, or 401 in OpenAI's envelope."""
        secret = self.secret(header)
        key = self.keys.authenticate(secret)
        if key is not None:
            if key.expires_at is not None and key.expires_at <= time.time():
                when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(key.expires_at))
                raise Unauthorized(f"This API key expired at {when}.", code="expired_api_key")
            return key
        if self.is_admin_secret(secret):
            return self.admin_key()
        if self.keys.was_revoked(secret):
            raise Unauthorized("This API key has been revoked.", code="revoked_api_key")
        raise Unauthorized("Incorrect API key provided.")

    def admin_key(self) -> ApiKey:
        """The server's admin key, as the key a request presents."""
        return ApiKey(ADMIN_KEY_ID, "admin", "", self.admin_hash or "", None, "admin", 0.0)

    def is_admin_secret(self, secret: str) -> bool:
        return _same(self.admin_hash, secret)

    def metrics_reader(self, header: str | None) -> None:
        """Pass the admin key or the metrics key; anything else is a 401."""
        secret = self.secret(header)
        if not (self.is_admin_secret(secret) or _same(self.metrics_hash, secret)):
            raise Unauthorized(
                "/metrics needs the admin key or server.metrics_key as a Bearer token."
            )


def _same(known_hash: str | None, secret: str) -> bool:
    """Whether `secret` hashes to `known_hash`, compared in constant time."""
    return known_hash is not None and hmac.compare_digest(known_hash, hash_secret(secret))
