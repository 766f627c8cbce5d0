"""/v1/deployments: run models on backends with replicas, scale, change and remove them."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter

from appliance.deployments.deployment import Status, deployment_json
from appliance.deployments.manager import DeploymentManager
from appliance.deployments.spec import CreateDeploymentBody, UpdateDeploymentBody
from appliance.management.envelope import ok, page_params, paged
from appliance.openai.decoding import decode_body
from appliance.openapi_docs import body

__all__ = ["CreateDeploymentBody", "DeploymentsController", "UpdateDeploymentBody"]
AnyRequest = Request[Any, Any, Any]


class DeploymentsController(Controller):
    path = "/deployments"
    tags = ["deployments"]  # noqa: RUF012 (Litestar reads it as a class attribute)

    @get("/", summary="List deployments: radiance.yaml's (declared) and the API's")
    async def list_deployments(
        self,
        deployments: NamedDependency[DeploymentManager],
        limit: Annotated[int | None, QueryParameter(ge=1, le=1000)] = None,
        offset: Annotated[int | None, QueryParameter(ge=0, le=2**62)] = None,
        status: FromQuery[Status | None] = None,
    ) -> Response[bytes]:
        limit, offset = page_params(limit, offset)
        found = [d for d in deployments if status is None or d.status == status]
        items = [deployment_json(d) for d in found[offset : offset + limit]]
        return paged(items, len(found), limit, offset, f"{len(found)} deployments")

    @post(
        "/",
        status_code=202,
        summary="Deploy a model; it comes up in the background (watch data.status)",
        operation_class=body(CreateDeploymentBody),
    )
    async def create_deployment(
        self, request: AnyRequest, deployments: NamedDependency[DeploymentManager]
    ) -> Response[bytes]:
        wanted = decode_body(await request.body(), CreateDeploymentBody)
        dep = await deployments.create(wanted)
        message = f"Deployment {dep.id} created; it is {dep.status}"
        return ok(deployment_json(dep), message, 202)

    @get("/{deployment_id:path}", summary="One deployment: status, replicas, download progress")
    async def get_deployment(
        self, deployments: NamedDependency[DeploymentManager], deployment_id: FromPath[str]
    ) -> Response[bytes]:
        dep = deployments.get(deployment_id.lstrip("/"))
        return ok(deployment_json(dep), "Deployment")

    @put(
        "/{deployment_id:path}",
        status_code=202,
        summary="Scale or change a deployment without dropping requests",
        operation_class=body(UpdateDeploymentBody),
    )
    async def update_deployment(
        self,
        request: AnyRequest,
        deployments: NamedDependency[DeploymentManager],
        deployment_id: FromPath[str],
    ) -> Response[bytes]:
        changes = decode_body(await request.body(), UpdateDeploymentBody)
        dep = await deployments.update(deployment_id.lstrip("/"), changes.configuration)
        return ok(deployment_json(dep), "Deployment change accepted; it rolls out now", 202)

    @delete(
        "/{deployment_id:path}",
        status_code=202,
        summary="Remove a deployment: it drains its requests, then frees its memory",
    )
    async def delete_deployment(
        self, deployments: NamedDependency[DeploymentManager], deployment_id: FromPath[str]
    ) -> Response[bytes]:
        dep = await deployments.delete(deployment_id.lstrip("/"))
        return ok(deployment_json(dep), "Deployment removed; its replicas drain, then stop", 202)
