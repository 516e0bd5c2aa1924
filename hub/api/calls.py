"""Get Call and List Calls: the REST side of the spec, over the replica's call store.

The handlers check the key and the query, then ask the store; every problem
found here is raised as an ``ApiError`` and answered by ``hub.errors``.
"""

from __future__ import annotations

import re
from typing import get_args

from starlette.requests import Request
from starlette.responses import Response

from callhub.events import PhoneNumber, check_dialog_name, check_session_id
from hub.api.call_records import with_summary
from hub.api.query import Query
from hub.api.replica import replica_of
from hub.api.responses import json_response
from hub.errors import BadParameter
from hub.store.call_store import LIST_STATUSES, CallFilter, ListStatus, decode_page_token

PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 1000
LIST_PARAMETERS = ("status", "dialog_name", "caller_id", "ended_after", "ended_before",
                   "page_size", "page_token")
PHONE_NUMBER_MAX: int = get_args(PhoneNumber)[1].max_length  # what a caller_id can be
_ONE_LINE = re.compile(rf"[^\r\n]{{1,{PHONE_NUMBER_MAX}}}")


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
    query = Query(request.query_params, LIST_PARAMETERS)
    listing = _listing(query)
    page_size = query.integer("page_size", PAGE_SIZE_DEFAULT, 1, PAGE_SIZE_MAX)
    token = query.text("page_token")
    after = decode_page_token(token, listing) if token else None
    page = await replica.store.list_calls(listing, page_size, after, principal.scope)
    return json_response(page)


def _listing(query: Query) -> CallFilter:
    """The filters of a List Calls request, each checked against the others."""
    status = _status(query.text("status", "active", empty_ok=False))
    dialog = query.text("dialog_name", check=check_dialog_name)
    caller = query.text("caller_id", check=_caller_id, empty_ok=False)
    after = query.time_ms("ended_after")
    before = query.time_ms("ended_before")
    if status == "active":
        for name, given in (("ended_after", after), ("ended_before", before)):
            if given is not None:
                raise BadParameter(f"{name} narrows ended calls: use it with status "
                                   "terminated or all", param=name)
    if caller and status != "terminated":
        raise BadParameter("caller_id searches ended calls: use it with status terminated",
                           param="caller_id")
    if after is not None and before is not None and before <= after:
        raise BadParameter("ended_before must be later than ended_after", param="ended_before")
    return CallFilter(status=status, dialog=dialog, caller_id=caller,
                      ended_after_ms=after, ended_before_ms=before)


def _status(value: str) -> ListStatus:
    for status in LIST_STATUSES:
        if value == status:
            return status
    raise BadParameter(f"status must be one of {', '.join(LIST_STATUSES)}, got {value[:32]!r}",
                       param="status")


def _caller_id(value: str) -> str:
    if not _ONE_LINE.fullmatch(value):
        raise ValueError(f"caller_id must be 1-{PHONE_NUMBER_MAX} characters on one line")
    return value
