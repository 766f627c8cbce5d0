"""/v1/deployments: run models on backends with replicas, scale, change and remove them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

from litestar import Controller, Response, delete, get, post, put
from litestar.params import FromPath, FromQuery, QueryParameter

from appliance.deployments.deployment import Status, deployment_json
from appliance.deployments.manager import (
    DeploymentDeclared,
    DeploymentExists,
    DeploymentManager,
    DeploymentNotFound,
)
from appliance.deployments.spec import (
    CreateDeploymentBody,
    DeploymentInvalid,
    UpdateDeploymentBody,
)
from appliance.management.envelope import (
    AnyRequest,
    ManagementError,
    decode_body,
    invalid,
    ok,
    page_params,
    paged,
    require_admin,
)
from appliance.openapi_docs import body
from appliance.runtime import Runtime

__all__ = ["CreateDeploymentBody", "DeploymentsController", "UpdateDeploymentBody"]


def _not_found(deployment_id: str) -> ManagementError:
    return ManagementError(
        404, "DEPLOYMENT_NOT_FOUND", f"no deployment `{deployment_id}`", {"id": deployment_id}
    )


def _invalid(exc: DeploymentInvalid) -> ManagementError:
    details = {"field": exc.field} if exc.field else {}
    if exc.hint:
        details["hint"] = exc.hint
    return invalid(str(exc), **details)


def _declared(deployment_id: str) -> ManagementError:
    return ManagementError(
        409,
        "DEPLOYMENT_DECLARED_IN_CONFIG",
        f"deployment `{deployment_id}` is declared in radiance.yaml; change it there and "
        "restart, or create a deployment of another name with POST /v1/deployments",
        {"id": deployment_id},
    )


@contextlib.contextmanager
def _errors(deployment_id: str) -> Iterator[None]:
    """The manager's refusals as the envelope's errors."""
    try:
        yield
    except DeploymentNotFound:
        raise _not_found(deployment_id) from None
    except DeploymentDeclared:
        raise _declared(deployment_id) from None
    except DeploymentInvalid as exc:
        raise _invalid(exc) from None


def _manager(request: AnyRequest) -> DeploymentManager:
    require_admin(request)
    return Runtime.of(request).deployments


class DeploymentsController(Controller):
    path = "/deployments"
    tags = ["deployments"]  # noqa: RUF012 (Litestar reads it as a class attribute)
    opt = {"envelope": "management"}  # noqa: RUF012

    @get("/", summary="List deployments: radiance.yaml's (declared) and the API's")
    async def list_deployments(
        self,
        request: AnyRequest,
        limit: Annotated[int | None, QueryParameter(ge=1, le=1000)] = None,
        offset: Annotated[int | None, QueryParameter(ge=0, le=2**62)] = None,
        status: FromQuery[Status | None] = None,
    ) -> Response[bytes]:
        manager = _manager(request)
        limit, offset = page_params(limit, offset)
        found = [d for d in manager if status is None or d.status == status]
        items = [deployment_json(d) for d in found[offset : offset + limit]]
        return paged(items, len(found), limit, offset, f"{len(found)} deployments")

    @post(
        "/",
        status_code=202,
        summary="Deploy a model; it comes up in the background (watch data.status)",
        operation_class=body(CreateDeploymentBody),
    )
    async def create_deployment(self, request: AnyRequest) -> Response[bytes]:
        manager = _manager(request)
        wanted = decode_body(await request.body(), CreateDeploymentBody)
        try:
            dep = await manager.create(wanted)
        except DeploymentInvalid as exc:
            raise _invalid(exc) from None
        except DeploymentExists as exc:
            raise ManagementError(
                409,
                "DEPLOYMENT_EXISTS",
                f"`{exc}` already names a model or deployment; give the deployment a `name`",
                {"name": str(exc)},
            ) from None
        message = f"Deployment {dep.id} created; it is {dep.status}"
        return ok(deployment_json(dep), message, 202)

    @get("/{deployment_id:path}", summary="One deployment: status, replicas, download progress")
    async def get_deployment(
        self, request: AnyRequest, deployment_id: FromPath[str]
    ) -> Response[bytes]:
        manager = _manager(request)
        deployment_id = deployment_id.lstrip("/")
        with _errors(deployment_id):
            dep = manager.get(deployment_id)
        return ok(deployment_json(dep), "Deployment")

    @put(
        "/{deployment_id:path}",
        status_code=202,
        summary="Scale or change a deployment without dropping requests",
        operation_class=body(UpdateDeploymentBody),
    )
    async def update_deployment(
        self, request: AnyRequest, deployment_id: FromPath[str]
    ) -> Response[bytes]:
        manager = _manager(request)
        deployment_id = deployment_id.lstrip("/")
        changes = decode_body(await request.body(), UpdateDeploymentBody)
        with _errors(deployment_id):
            dep = await manager.update(deployment_id, changes.configuration)
        return ok(deployment_json(dep), "Deployment change accepted; it rolls out now", 202)

    @delete(
        "/{deployment_id:path}",
        status_code=202,
        summary="Remove a deployment: it drains its requests, then frees its memory",
    )
    async def delete_deployment(
        self, request: AnyRequest, deployment_id: FromPath[str]
    ) -> Response[bytes]:
        manager = _manager(request)
        deployment_id = deployment_id.lstrip("/")
        with _errors(deployment_id):
            dep = await manager.delete(deployment_id)
        return ok(deployment_json(dep), "Deployment removed; its replicas drain, then stop", 202)
