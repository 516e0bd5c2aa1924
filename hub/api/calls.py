"""Get Call and List Calls: the REST side of the spec, over the replica's call store.

The handlers check the key and the query, then ask the store; every problem
found here is raised as an ``ApiError`` and answered by ``hub.errors``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from callhub.events import check_dialog_name, check_session_id
from hub.api.call_records import with_summary
from hub.api.query import Query
from hub.api.replica import replica_of
from hub.api.responses import json_response
from hub.errors import BadParameter
from hub.store.call_store import decode_page_token

PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 1000


async def get_call(request: Request) -> Response:
    replica = replica_of(request)
    principal = replica.keys.authenticate(request)
    if request.scope["query_string"]:  # parsing an empty one costs every request ~2 µs
        Query(request.query_params, ())
    session_id = request.path_params["id"]
    try:
        check_session_id(session_id)
    except ValueError as error:
        raise BadParameter(str(error), param="id") from None
    view = await replica.store.get_call(session_id, principal.scope)
    if view.status == "terminated":
        view = await with_summary(replica, view)
    return json_response(view)


async def list_calls(request: Request) -> Response:
    replica = replica_of(request)
    principal = replica.keys.authenticate(request)
    query = Query(request.query_params, ("dialog_name", "page_size", "page_token"))
    dialog = query.text("dialog_name", check=check_dialog_name)
    page_size = query.integer("page_size", PAGE_SIZE_DEFAULT, 1, PAGE_SIZE_MAX)
    token = query.text("page_token")
    after = decode_page_token(token, dialog) if token else None
    page = await replica.store.list_calls(dialog, page_size, after, principal.scope)
    return json_response(page)
