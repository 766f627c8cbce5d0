"""/v1/deployments: run models on backends with replicas, scale, change and remove them."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter

from appliance.deployments.deployment import Status, deployment_view
from appliance.deployments.manager import DeploymentManager
from appliance.deployments.spec import CreateDeploymentBody, UpdateDeploymentBody
from appliance.management.typed_envelope import (
    ADMIN_ERRORS,
    DEPLOYMENT_CONFLICT,
    DEPLOYMENT_NOT_FOUND,
    Item,
    Page,
)
from appliance.management.wire import Deployment
from appliance.openai.decoding import decode_body
from appliance.openapi_docs import body

__all__ = ["CreateDeploymentBody", "DeploymentsController", "UpdateDeploymentBody"]
AnyRequest = Request[Any, Any, Any]
ONE = {**ADMIN_ERRORS, 404: DEPLOYMENT_NOT_FOUND}
CHANGE = {**ONE, 409: DEPLOYMENT_CONFLICT}


class DeploymentsController(Controller):
    path = "/deployments"
    tags = ["deployments"]  # noqa: RUF012 (Litestar reads it as a class attribute)

    @get(
        "/",
        summary="List deployments: radiance.yaml's (declared) and the API's",
        responses=ADMIN_ERRORS,
    )
    async def list_deployments(
        self,
        deployments: NamedDependency[DeploymentManager],
        limit: Annotated[int | None, QueryParameter(ge=1, le=1000)] = None,
        offset: Annotated[int | None, QueryParameter(ge=0, le=2**62)] = None,
        status: FromQuery[Status | None] = None,
    ) -> Page[Deployment]:
        found = [d for d in deployments if status is None or d.status == status]
        page = Page.of(found, limit, offset, f"{len(found)} deployments")
        return Page([deployment_view(d) for d in page.data], page.message, page.pagination)

    @post(
        "/",
        status_code=202,
        summary="Deploy a model; it comes up in the background (watch data.status)",
        operation_class=body(CreateDeploymentBody),
        responses={**ADMIN_ERRORS, 409: DEPLOYMENT_CONFLICT},
    )
    async def create_deployment(
        self, request: AnyRequest, deployments: NamedDependency[DeploymentManager]
    ) -> Item[Deployment]:
        wanted = decode_body(await request.body(), CreateDeploymentBody)
        dep = await deployments.create(wanted)
        return Item(deployment_view(dep), f"Deployment {dep.id} created; it is {dep.status}")

    @get(
        "/{deployment_id:path}",
        summary="One deployment: status, replicas, download progress",
        responses=ONE,
    )
    async def get_deployment(
        self, deployments: NamedDependency[DeploymentManager], deployment_id: FromPath[str]
    ) -> Item[Deployment]:
        dep = deployments.get(deployment_id.lstrip("/"))
        return Item(deployment_view(dep), "Deployment")

    @put(
        "/{deployment_id:path}",
        status_code=202,
        summary="Scale or change a deployment without dropping requests",
        operation_class=body(UpdateDeploymentBody),
        responses=CHANGE,
    )
    async def update_deployment(
        self,
        request: AnyRequest,
        deployments: NamedDependency[DeploymentManager],
        deployment_id: FromPath[str],
    ) -> Item[Deployment]:
        changes = decode_body(await request.body(), UpdateDeploymentBody)
        dep = await deployments.update(deployment_id.lstrip("/"), changes.configuration)
        return Item(deployment_view(dep), "Deployment change accepted; it rolls out now")

    @delete(
        "/{deployment_id:path}",
        status_code=202,
        summary="Remove a deployment: it drains its requests, then frees its memory",
        responses=CHANGE,
    )
    async def delete_deployment(
        self, deployments: NamedDependency[DeploymentManager], deployment_id: FromPath[str]
    ) -> Item[Deployment]:
        dep = await deployments.delete(deployment_id.lstrip("/"))
        return Item(deployment_view(dep), "Deployment removed; its replicas drain, then stop")
