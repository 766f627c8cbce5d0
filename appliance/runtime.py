"""Everything a request handler needs, built by the app's lifespan and kept on app.state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request

from appliance.accounting.limits import Policy
from appliance.accounting.meter import Meter, policy_for
from appliance.auth import Authenticator
from appliance.config import LoadedConfig
from appliance.deployments.manager import DeploymentManager
from appliance.errors import ApiError
from appliance.registry import ModelRegistry
from appliance.state.database import Database
from appliance.state.keys import ApiKey, KeyStore
from appliance.state.ledger import Ledger
from appliance.state.webhooks import WebhookStore
from appliance.webhooks.events import EventBus


@dataclass
class Runtime:
    loaded: LoadedConfig
    db: Database
    keys: KeyStore
    ledger: Ledger
    models: ModelRegistry
    auth: Authenticator
    meter: Meter
    # Publish deployment.status_changed, model.failed, ... here; webhooks receive them.
    events: EventBus
    webhooks: WebhookStore
    deployments: DeploymentManager

    @staticmethod
    def of(request: Request[Any, Any, Any]) -> Runtime:
        runtime: Runtime = request.app.state.runtime
        return runtime

    def model_id(self, name: str) -> str | None:
        """The id a model id or alias routes to; None if no model has that name."""
        try:
            return self.models.resolve(name).id
        except ApiError:
            return None

    def policy(self, key: ApiKey) -> Policy:
        return policy_for(key, self.loaded.config, self.model_id)
