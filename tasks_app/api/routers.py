"""The API router: DRF's DefaultRouter, plus actions that serve a file under an exact name."""

from __future__ import annotations

import re
from typing import Any

from rest_framework.routers import DefaultRouter, Route


class ApiRouter(DefaultRouter):
    """DefaultRouter where `@action(..., serves_file=True)` routes end in the file name itself.

    Such a route (`tasks/{task_id}/waveform.json`) takes no trailing slash, its url_path is
    matched literally (the "." is no regex wildcard), and it gets no format-suffix variant:
    otherwise DRF would also route `waveform.json.json` and pass the view a `format` argument.
    """

    def _get_dynamic_route(self, route: Route, action: Any) -> Route:
        """Build the route of one extra action; file actions end exactly in their name."""
        built = super()._get_dynamic_route(route, action)
        if not action.kwargs.get("serves_file"):
            return built
        # A marker for the router only: as_view() refuses keywords that are no view attribute.
        initkwargs = {k: v for k, v in built.initkwargs.items() if k != "serves_file"}
        url = route.url.replace("{url_path}", re.escape(action.url_path))
        return built._replace(url=url.replace("{trailing_slash}", ""), initkwargs=initkwargs)

    def get_urls(self) -> list[Any]:
        """Every route, except format-suffix variants of file routes."""
        return [pattern for pattern in super().get_urls()
                if not ("format" in pattern.pattern.regex.groupindex and serves_file(pattern))]


def serves_file(pattern: Any) -> bool:
    """Whether a URL pattern leads to a viewset action marked `serves_file=True`."""
    view = getattr(pattern, "callback", None)
    actions = getattr(view, "actions", None) or {}
    return any(getattr(getattr(view.cls, name, None), "kwargs", {}).get("serves_file")
               for name in actions.values())
