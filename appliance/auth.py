"""Who is calling: a Bearer key from radiance.yaml or the database, or the admin key."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from appliance.errors import Unauthorized
from appliance.state.keys import ApiKey, KeyStore, hash_secret

ADMIN_KEY_ID = "admin"


@dataclass(frozen=True)
class Authenticator:
    keys: KeyStore
    admin_hash: str | None

    def bearer(self, header: str | None) -> ApiKey:
        """The key a request presents, or 401 in OpenAI's envelope."""
        if not header:
            raise Unauthorized(
                "You didn't provide an API key. Send it as `Authorization: Bearer <key>`."
            )
        scheme, _, secret = header.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise Unauthorized("Send the API key as `Authorization: Bearer <key>`.")
        key = self.keys.authenticate(secret)
        if key is not None:
            return key
        if self.admin_hash is not None and hmac.compare_digest(
            self.admin_hash, hash_secret(secret)
        ):
            return ApiKey(ADMIN_KEY_ID, "admin", "", self.admin_hash, None, "config", 0.0)
        raise Unauthorized("Incorrect API key provided.")
