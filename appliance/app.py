"""The app factory: routes, error mapping, and a lifespan that owns the database and engines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import anyio
import msgspec
from litestar import Litestar, Response, Router, get
from litestar.di import NamedDependency
from litestar.openapi import OpenAPIConfig, ResponseSpec

from appliance.accounting.budget_alerts import BudgetAlerts
from appliance.accounting.limits import Limiter, Policy
from appliance.accounting.meter import Meter, policy_for
from appliance.accounting.spending import Spending
from appliance.auth import ADMIN_KEY_ID, Authenticator
from appliance.batches.runner import BatchRunner
from appliance.config import LoadedConfig
from appliance.dependencies import DEPENDENCIES, admin_only, metrics_reader
from appliance.deployments.manager import DeploymentManager
from appliance.deployments.provisioner import EngineFactory
from appliance.error_handlers import EXCEPTION_HANDLERS, MANAGEMENT_HANDLERS
from appliance.fine_tuning.billing import TrainingBill
from appliance.fine_tuning.datasets import Datasets
from appliance.fine_tuning.jobs import FineTuning
from appliance.fine_tuning.runner import FineTuningRunner
from appliance.management.analytics_routes import AnalyticsController
from appliance.management.billing_routes import BillingController
from appliance.management.datasets_routes import (
    CreateDatasetBody,
    DatasetsController,
    DatasetUpload,
)
from appliance.management.deployments_routes import (
    CreateDeploymentBody,
    DeploymentsController,
    UpdateDeploymentBody,
)
from appliance.management.fine_tuning_routes import (
    CreateFineTuningBody,
    SeedFineTuningController,
)
from appliance.management.keys_routes import ApiKeysController, CreateKeyBody, UpdateKeyBody
from appliance.management.live_routes import LiveController
from appliance.management.own_usage_routes import OwnUsageController
from appliance.management.tiers_routes import TiersController
from appliance.management.webhooks_routes import CreateWebhookBody, WebhooksController
from appliance.metrics import CONTENT_TYPE, Metrics
from appliance.openai.answers import DOCUMENTED as OPENAI_ANSWERS
from appliance.openai.answers import ErrorResponse
from appliance.openai.batch_protocol import DOCUMENTED as BATCHES_DOCUMENTED
from appliance.openai.batches_routes import BatchesController
from appliance.openai.files_routes import FilesController
from appliance.openai.fine_tuning_protocol import DOCUMENTED as FINE_TUNING_DOCUMENTED
from appliance.openai.fine_tuning_routes import (
    FineTunedModelsController,
    FineTuningJobsController,
)
from appliance.openai.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from appliance.openai.responses_protocol import DOCUMENTED as RESPONSES_DOCUMENTED
from appliance.openai.responses_routes import ResponsesController
from appliance.openai.routes import OpenAIController
from appliance.openapi_docs import add_body_schemas
from appliance.registry import ModelRegistry
from appliance.runtime import Runtime, model_id
from appliance.state.batches import BatchStore
from appliance.state.database import open_database
from appliance.state.datasets import DatasetStore
from appliance.state.deployments import DeploymentStore
from appliance.state.files import FileStore
from appliance.state.fine_tuning import FineTuningStore
from appliance.state.keys import ApiKey, KeyStore, hash_secret
from appliance.state.ledger import Ledger
from appliance.state.responses import ResponseStore
from appliance.state.webhooks import WebhookStore
from appliance.webhooks.events import EventBus
from appliance.webhooks.sender import RetryPolicy, WebhookSender

log = logging.getLogger(__name__)
KEY_REFRESH_SECONDS = 1.0


async def _follow_key_changes(keys: KeyStore) -> None:
    """Pick up keys another process (`radiance keys`) changed, within a second."""
    while True:
        await anyio.sleep(KEY_REFRESH_SECONDS)
        try:
            if await keys.refresh():
                log.info("reloaded API keys changed by another process")
        except Exception:
            log.exception("could not reload API keys")


@get(
    "/metrics",
    summary="Prometheus metrics",
    description="Needs the admin key or `server.metrics_key` as a Bearer token.",
    media_type=CONTENT_TYPE,
    tags=["metrics"],
    guards=[metrics_reader],
    responses={
        401: ResponseSpec(
            data_container=ErrorResponse,
            description="Neither the admin key nor the metrics key",
            generate_examples=False,
        )
    },
)
async def metrics(meter: NamedDependency[Meter]) -> Response[bytes]:
    return Response(meter.metrics.render(), media_type=CONTENT_TYPE)


ADMIN_ONLY = [
    ApiKeysController,
    LiveController,
    AnalyticsController,
    BillingController,
    WebhooksController,
    TiersController,
    DeploymentsController,
]
# Bodies the handlers decode or encode themselves, documented in the OpenAPI components.
BODIES: list[type[msgspec.Struct]] = [
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    CreateKeyBody,
    UpdateKeyBody,
    CreateWebhookBody,
    CreateDeploymentBody,
    UpdateDeploymentBody,
    *OPENAI_ANSWERS,  # and the OpenAI answers
    *RESPONSES_DOCUMENTED,  # /v1/responses
    *BATCHES_DOCUMENTED,  # /v1/files, /v1/batches
    *FINE_TUNING_DOCUMENTED,  # /v1/fine_tuning/jobs
    CreateFineTuningBody,  # /v1/fine-tuning
    CreateDatasetBody,  # /v1/datasets, as JSON or as an upload
    DatasetUpload,
]
OPENAI = [
    OpenAIController,
    ResponsesController,
    FilesController,
    BatchesController,
    FineTuningJobsController,
    FineTunedModelsController,
]


def create_app(
    loaded: LoadedConfig,
    registry: ModelRegistry | None = None,
    engines: EngineFactory | None = None,
) -> Litestar:
    """Build the server for one config; `registry` lets tests bring their own engines, and
    `engines` makes the replicas' engines (the config's backends by default)."""
    config = loaded.config

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        db = await open_database(loaded.database_path)
        models = registry or ModelRegistry()
        ledger = Ledger(loaded.database_path, config.server.ledger_durability)
        deployments: DeploymentManager | None = None
        meter: Meter | None = None
        try:
            keys = KeyStore(db)
            await keys.sync_declared(config.keys)
            spending = Spending(ledger)
            events = EventBus(db)
            alerts = BudgetAlerts(db, keys, spending, events)
            ledger.listeners += [spending.committed, alerts.committed]
            ledger.start()

            deployments = DeploymentManager(
                loaded, models, DeploymentStore(db), events, factory=engines
            )
            await deployments.start()
            admin, reader = config.server.admin_key, config.server.metrics_key
            auth = Authenticator(
                keys,
                hash_secret(admin) if admin else None,
                hash_secret(reader) if reader else None,
            )
            meter = Meter(ledger, Limiter(), spending, Metrics(models))
            responses = ResponseStore(db, config.server.responses_retention_days * 86400.0)
            files = FileStore(db, loaded.files_dir, config.server.max_file_bytes)
            batches = BatchStore(db)

            def key_of(key_id: str) -> ApiKey | None:
                if key_id == ADMIN_KEY_ID:
                    return auth.admin_key() if admin else None
                key = keys.cached(key_id)
                return key if key is not None and key.status(time.time()) == "active" else None

            def model_of(name: str) -> str | None:
                return model_id(models, name)

            def policy_of(key: ApiKey) -> Policy:
                return policy_for(key, config, model_of)

            runner = BatchRunner(
                store=batches,
                files=files,
                meter=meter,
                models=models,
                responses=responses,
                events=events,
                key_of=key_of,
                policy_of=policy_of,
                max_in_flight=config.server.batch_lines_in_flight,
            )
            tuning_store = FineTuningStore(db)
            checks = asyncio.Semaphore(config.training.checks_at_once)
            tuning_runner = FineTuningRunner(
                store=tuning_store,
                files=files,
                loaded=loaded,
                deployments=deployments,
                bill=TrainingBill(ledger, meter, loaded, key_of, policy_of),
                events=events,
                jobs_dir=loaded.files_dir / "fine_tuning",
                checks=checks,
            )
            fine_tuning = FineTuning(
                store=tuning_store,
                runner=tuning_runner,
                files=files,
                deployments=deployments,
                meter=meter,
                loaded=loaded,
                model_id=model_of,
                policy_of=policy_of,
            )
            datasets = Datasets(DatasetStore(db), files, model_of, loaded, checks)
            await datasets.resume()
            app.state.runtime = Runtime(
                loaded=loaded,
                db=db,
                keys=keys,
                ledger=ledger,
                models=models,
                auth=auth,
                meter=meter,
                events=events,
                webhooks=WebhookStore(db),
                deployments=deployments,
                responses=responses,
                files=files,
                batches=batches,
                batch_runner=runner,
                fine_tuning=fine_tuning,
                datasets=datasets,
            )
            meter.budget_exhausted.append(alerts.exhausted)
            hooks = config.webhooks
            policy = RetryPolicy(
                timeout=hooks.timeout_seconds,
                retry_for=hooks.retry_for_seconds,
                max_backoff=hooks.max_backoff_seconds,
            )
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_follow_key_changes, keys)
                tasks.start_soon(WebhookSender(WebhookStore(db), events, policy).run)
                tasks.start_soon(alerts.run)
                tasks.start_soon(deployments.run)
                tasks.start_soon(runner.run)
                tasks.start_soon(tuning_runner.run)
                yield
                tasks.cancel_scope.cancel()
            await datasets.close()
        finally:
            if meter is not None:  # requests the server did not finish: a row each
                await meter.settle_open()
            if deployments is not None:
                await deployments.stop()
            await ledger.close()
            await db.close()

    management = Router(
        path="/",
        route_handlers=[
            Router(path="/", route_handlers=ADMIN_ONLY, guards=[admin_only]),
            OwnUsageController,  # and for any key, its own:
            SeedFineTuningController,
            DatasetsController,
        ],
        exception_handlers=MANAGEMENT_HANDLERS,
    )
    return Litestar(
        route_handlers=[
            Router(path="/v1", route_handlers=[*OPENAI, management]),
            Router(path="/", route_handlers=OPENAI),
            metrics,
        ],
        lifespan=[lifespan],
        dependencies=DEPENDENCIES,
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=config.server.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Radiance",
            version="0.1.0",
            path="/schema",
        ),
        on_startup=[lambda app: add_body_schemas(app, BODIES)],
        logging_config=None,
    )
