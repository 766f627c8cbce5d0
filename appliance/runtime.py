"""Everything the request handlers need, built by the app's lifespan and kept on app.state.

Handlers receive its parts as dependencies (`appliance.dependencies`), never the whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from appliance.accounting.limits import Policy
from appliance.accounting.meter import Meter, policy_for
from appliance.auth import Authenticator
from appliance.config import LoadedConfig
from appliance.deployments.manager import DeploymentManager
from appliance.errors import ApiError
from appliance.fine_tuning.datasets import Datasets
from appliance.registry import ModelRegistry
from appliance.state.batches import BatchStore
from appliance.state.database import Database
from appliance.state.files import FileStore
from appliance.state.keys import ApiKey, KeyStore
from appliance.state.ledger import Ledger
from appliance.state.responses import ResponseStore
from appliance.state.webhooks import WebhookStore
from appliance.webhooks.events import EventBus

if TYPE_CHECKING:  # the runner serves through the routes, which read the runtime
    from appliance.batches.runner import BatchRunner
    from appliance.fine_tuning.jobs import FineTuning


def model_id(models: ModelRegistry, name: str) -> str | None:
    """The id a model id or alias routes to; None if no model has that name."""
    try:
        return models.resolve(name).id
    except ApiError:
        return None


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
    responses: ResponseStore  # stored /v1/responses
    files: FileStore  # /v1/files
    batches: BatchStore  # /v1/batches
    batch_runner: BatchRunner
    fine_tuning: FineTuning  # /v1/fine_tuning/jobs, /v1/fine-tuning
    datasets: Datasets  # /v1/datasets

    def model_id(self, name: str) -> str | None:
        return model_id(self.models, name)

    def policy(self, key: ApiKey) -> Policy:
        return policy_for(key, self.loaded.config, self.model_id)
