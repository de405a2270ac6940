"""The streams' database pool: ORM work for streams on threads of their own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

T = TypeVar("T")

_pool: ThreadPoolExecutor | None = None


def _call(fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    try:
        return fn(*args, **kwargs)
    except (OperationalError, InterfaceError):
        connection.close()  # a broken connection is reopened by the next call
        raise


async def run_db(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ORM code for streams on their own thread pool, each thread keeping its connection.

    Never on asgiref's single thread-sensitive executor: a reconnect storm must not queue
    behind one thread, nor delay every other request's database work.
    """
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(settings.SSE_DB_THREADS, thread_name_prefix="sse-db")
    return await asyncio.get_running_loop().run_in_executor(_pool, partial(_call, fn, args, kwargs))
