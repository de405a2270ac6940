"""The API router: DRF's DefaultRouter, plus actions that serve a file under an exact name."""

from __future__ import annotations

import re
from typing import Any

from rest_framework.routers import DefaultRouter, Route


class ApiRouter(DefaultRouter):
    """DefaultRouter without format suffixes, where `serves_file=True` actions end in a file name.

    Format-suffix routes (`tasks/{id}.json`) are left out: no view takes their `format`
    argument, and `?format=json` does the same job. A file action's route
    (`tasks/{task_id}/waveform.json`) takes no trailing slash and matches its url_path
    literally, so the "." is no regex wildcard.
    """

    include_format_suffixes = False

    def _get_dynamic_route(self, route: Route, action: Any) -> Route:
        """Build the route of one extra action; file actions end exactly in their name."""
        built = super()._get_dynamic_route(route, action)
        if not action.kwargs.get("serves_file"):
            return built
        # A marker for the router only: as_view() refuses keywords that are no view attribute.
        initkwargs = {k: v for k, v in built.initkwargs.items() if k != "serves_file"}
        url = route.url.replace("{url_path}", re.escape(action.url_path))
        return built._replace(url=url.replace("{trailing_slash}", ""), initkwargs=initkwargs)
