"""Pagination for every list endpoint: `{"count", "next", "previous", "results"}`."""

from __future__ import annotations

from rest_framework.pagination import PageNumberPagination


class StandardPagination(PageNumberPagination):
    """Page-number pagination; clients may pick a page size up to `max_page_size`."""

    page_size_query_param = "page_size"
    max_page_size = 100
