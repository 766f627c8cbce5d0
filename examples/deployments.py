"""Deploy a model at run time, use it, scale it and remove it, with the management API.

source .radiance/demo-keys.env      # or export RADIANCE_ADMIN_KEY=... ALICE_KEY=...
.venv/bin/python examples/deployments.py
"""

import os
import time

import httpx
from openai import OpenAI

base_url = os.environ.get("RADIANCE_URL", "http://127.0.0.1:8000/v1")
admin = httpx.Client(
    base_url=base_url,
    headers={"Authorization": f"Bearer {os.environ['RADIANCE_ADMIN_KEY']}"},
    timeout=30,
)


def wait_until(name: str, replicas: int) -> dict:
    """Poll the deployment until `replicas` of it are ready (or it failed)."""
    while True:
        data = admin.get(f"/deployments/{name}").raise_for_status().json()["data"]
        if data["status"] == "failed":
            raise SystemExit(f"{name} failed: {data['error']}")
        if data["status"] == "ready" and data["readyReplicas"] == replicas:
            return data
        time.sleep(0.2)


created = admin.post(
    "/deployments",
    json={"modelId": "tiny", "name": "tiny-example", "configuration": {"replicas": 1}},
)
print(created.status_code, created.json()["message"])
created.raise_for_status()
wait_until("tiny-example", 1)

# Clients call a deployment by its name, like any model.
client = OpenAI(base_url=base_url, api_key=os.environ["ALICE_KEY"])
reply = client.chat.completions.with_raw_response.create(
    model="tiny-example", messages=[{"role": "user", "content": "Hello!"}], max_tokens=8
)
print("served by", reply.headers["x-deployment-id"], "replica", reply.headers["x-replica-id"])

# Or through its own path: POST /v1/models/tiny-example/completions.
on_it = OpenAI(base_url=f"{base_url}/models/tiny-example", api_key=os.environ["ALICE_KEY"])
print("completion:", on_it.completions.create(model="tiny-example", prompt="Hi", max_tokens=5))

admin.put("/deployments/tiny-example", json={"configuration": {"replicas": 2}}).raise_for_status()
scaled = wait_until("tiny-example", 2)
print("replicas:", [replica["id"] for replica in scaled["replicas"]])

admin.delete("/deployments/tiny-example").raise_for_status()
while admin.get("/deployments/tiny-example").status_code != 404:
    time.sleep(0.2)
print("deleted")
