"""Kong's endpoints for every entity, generated from the entity schemas.

    /{entities}                                  GET list, POST create
    /{entities}/{id or key}                      GET, PATCH, PUT (upsert), DELETE
    /{entities}/{id or key}/{foreign field}      GET, PATCH, PUT, DELETE the referenced entity
                                                 (/routes/{r}/service, /key-auths/{k}/consumer)
    /{parents}/{parent}/{segment}                GET list, POST create under a parent
    /{parents}/{parent}/{segment}/{id or key}    GET, PATCH, PUT, DELETE under a parent
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.admin import errors
from tollway.admin.body import read_body
from tollway.admin.context import AdminContext
from tollway.admin.pagination import PageQuery
from tollway.admin.responses import json_response, no_content
from tollway.store.entities.crud import Crud, Parent
from tollway.store.entities.schema import EntitySchema, Nesting

Endpoint = Callable[[Request], Awaitable[Response]]
ENTITY_METHODS = ["GET", "PATCH", "PUT", "DELETE"]


@dataclass(frozen=True)
class RouteDoc:
    """What a generated route serves, for the OpenAPI document (tollway/admin/openapi.py)."""

    kind: str                           # "collection", "entity" or "referenced"
    schema: EntitySchema                # the entity served (for "referenced": the one pointed at)
    parent: EntitySchema | None = None  # /{parents}/{parent}/...: the parent entity
    via: EntitySchema | None = None     # "referenced": the entity whose foreign field is followed


class ApiRoute(Route):
    """A Starlette route that knows what it serves."""

    def __init__(self, path: str, endpoint: Callable[..., Any], *, methods: list[str], doc: RouteDoc) -> None:
        super().__init__(path, endpoint, methods=methods)
        self.doc = doc


# Collections Kong filters by a unique field given in the query (`/consumers?custom_id=x`): at most
# one entity, in a page of its own; paging and tags are then ignored.
UNIQUE_FILTERS = {"consumers": "custom_id"}


async def _filtered(crud: Crud, field: str, value: str) -> Response:
    if not value:
        raise errors.ApiError(400, {"message": f"{field} must be an unempty string"})
    found = await crud.find_by(field, value)
    return json_response({"data": [crud.schema.public(found)] if found else [], "next": None})


def _collection(crud: Crud, parent_of: Callable[[Request], Awaitable[Parent | None]]) -> Endpoint:
    unique_filter = UNIQUE_FILTERS.get(crud.schema.name)

    async def endpoint(request: Request) -> Response:
        parent = await parent_of(request)
        if request.method == "POST":
            data, form = await read_body(request)
            return json_response(crud.schema.public(await crud.create(data, form=form, parent=parent)), 201)
        if unique_filter is not None and parent is None and unique_filter in request.query_params:
            return await _filtered(crud, unique_filter, request.query_params[unique_filter])
        query = PageQuery.parse(request.query_params, nested=parent is not None)
        rows, last_id = await crud.page(size=query.size, after=query.after, tags=query.tags,
                                        any_tag=query.any_tag, parent=parent)
        next_path, offset = query.next_path(request.url.path, last_id)
        body = {"data": [crud.schema.public(row) for row in rows], "next": next_path}
        if offset:
            body["offset"] = offset
        return json_response(body)

    return endpoint


def _entity(crud: Crud, parent_of: Callable[[Request], Awaitable[Parent | None]]) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        parent = await parent_of(request)
        ident = request.path_params["ident"]
        if request.method == "GET":
            return json_response(crud.schema.public(await crud.read(ident, parent)))
        if request.method == "DELETE":
            # Kong: 204 at the top level whether or not it was there; under a parent, 404
            if not await crud.delete(ident, parent) and parent is not None:
                raise errors.not_found()
            return no_content()
        data, form = await read_body(request)
        if request.method == "PATCH":
            return json_response(crud.schema.public(await crud.update(ident, data, form=form, parent=parent)))
        return json_response(crud.schema.public(await crud.upsert(ident, data, form=form, parent=parent)))

    return endpoint


def _referenced(crud: Crud, target: Crud, field: str) -> Endpoint:
    """/routes/{r}/service: the entity a foreign field points at."""
    async def endpoint(request: Request) -> Response:
        child = await crud.read(request.path_params["ident"])
        ref = child.get(field)
        if ref is None:
            raise errors.not_found()
        if request.method == "DELETE":
            raise errors.ApiError(405, {"message": "Method not allowed"})  # Kong's: unlink it with a PATCH
        if request.method == "GET":
            return json_response(target.schema.public(await target.read(ref["id"])))
        data, form = await read_body(request)
        if request.method == "PATCH":
            return json_response(target.schema.public(await target.update(ref["id"], data, form=form)))
        return json_response(target.schema.public(await target.upsert(ref["id"], data, form=form)))

    return endpoint


async def _no_parent(_request: Request) -> None:
    return None


def _parent_resolver(parent: Crud, nesting: Nesting) -> Callable[[Request], Awaitable[Parent]]:
    async def resolve(request: Request) -> Parent:
        found = await parent.read(request.path_params["parent"])
        return Parent(nesting.field, found["id"])

    return resolve


def entity_routes(ctx: AdminContext) -> list[BaseRoute]:
    """Every generated route of every entity of this configuration."""
    routes: list[BaseRoute] = []
    cruds = ctx.cruds
    for schema in ctx.entities.values():
        crud = cruds[schema.name]
        base = f"/{schema.path}"
        routes.append(ApiRoute(base, _collection(crud, _no_parent), methods=["GET", "POST"],
                               doc=RouteDoc("collection", schema)))
        routes.append(ApiRoute(base + "/{ident}", _entity(crud, _no_parent), methods=ENTITY_METHODS,
                               doc=RouteDoc("entity", schema)))
        for field, reference in schema.foreign_fields().items():
            if reference in cruds:
                routes.append(ApiRoute(f"{base}/{{ident}}/{field}", _referenced(crud, cruds[reference], field),
                                       methods=ENTITY_METHODS,
                                       doc=RouteDoc("referenced", cruds[reference].schema, via=schema)))
        routes.extend(_nested_routes(schema, crud, cruds))
    return routes


def _nested_routes(schema: EntitySchema, crud: Crud, cruds: dict[str, Crud]) -> list[BaseRoute]:
    routes: list[BaseRoute] = []
    for nesting in schema.nested:
        parent = cruds.get(schema.fields[nesting.field]["reference"])
        if parent is None:
            continue
        resolve = _parent_resolver(parent, nesting)
        base = f"/{parent.schema.path}/{{parent}}/{nesting.segment}"
        routes.append(ApiRoute(base, _collection(crud, resolve), methods=["GET", "POST"],
                               doc=RouteDoc("collection", schema, parent=parent.schema)))
        routes.append(ApiRoute(base + "/{ident}", _entity(crud, resolve), methods=ENTITY_METHODS,
                               doc=RouteDoc("entity", schema, parent=parent.schema)))
    return routes
