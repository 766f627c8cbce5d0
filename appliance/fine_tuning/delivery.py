"""What a succeeded job delivers: its model, deployed and serving, and its results file."""

from __future__ import annotations

import asyncio
import time

from appliance.auth import ADMIN_KEY_ID
from appliance.deployments.manager import DeploymentExists, DeploymentManager
from appliance.deployments.spec import CreateDeploymentBody, DeploymentInvalid
from appliance.state.files import FileStore, new_file_id
from appliance.state.fine_tuning import FineTuningStore, StoredJob

SERVE_SECONDS = 600.0  # how long a fine-tuned model may take to come up


async def deploy_adapter(
    deployments: DeploymentManager, name: str, base: str, adapter: str, owner: str
) -> str | None:
    """Deploy the adapter on its base model as `name`, the job's key's alone (the admin's
    jobs make models for every key); None once it serves, else why it does not."""
    body = CreateDeploymentBody(model_id=base, name=name, adapter=adapter)
    try:
        await deployments.create(body, owner=None if owner == ADMIN_KEY_ID else owner)
    except DeploymentExists:
        pass  # deployed before a restart
    except DeploymentInvalid as exc:
        return str(exc)
    deadline = time.monotonic() + SERVE_SECONDS
    while time.monotonic() < deadline:
        dep = deployments.get(name)
        if dep.status == "ready":
            return None
        if dep.status == "failed":
            return dep.error or "it failed to load"
        await asyncio.sleep(0.1)
    return f"it was not ready after {SERVE_SECONDS:.0f} s"


async def results_file(store: FineTuningStore, files: FileStore, stored: StoredJob) -> str:
    """The step metrics as a CSV file (purpose `fine-tune-results`), as OpenAI gives; its id."""
    rows = await store.metrics(stored.job.id)
    lines = [b"step,train_loss,train_accuracy\n"] + [
        f"{r.get('step')},{r.get('train_loss')},{r.get('train_mean_token_accuracy')}\n".encode()
        for r in rows
    ]
    file_id = new_file_id()
    size, digest = await asyncio.to_thread(files.write_lines, file_id, lines)
    await files.add(file_id, stored.key_id, "step_metrics.csv", "fine-tune-results", size, digest)
    return file_id
