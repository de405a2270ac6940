"""Files the API serves: Range (206/416), HEAD, Content-Length, ETag/Last-Modified and 304."""

from __future__ import annotations

import contextlib
import json
import os
import warnings

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import RequestFactory
from django.utils.http import http_date

from tasks_app.audio.generate import write_tone
from tasks_app.downloads import StoredFile, file_response

from .download_client import completed_with_output, download, rss, stalled_download
from .live_server import LiveService, start_service, stop_service, wait_until
from .test_upload_limits import peak_rss_since_reset, reset_peak_rss

DATA = bytes(range(256)) * 1024  # 256 KiB: more than one chunk
NAME = "artifacts/task_x/1/out.wav"
MIB = 2**20
BIG = 128 * MIB
# Generous: a download is bounded by a chunk and Twisted's buffer per client, well under 1 MiB.
RSS_BOUND = 48 * MIB


def body(response) -> bytes:
    """The whole body, read as a synchronous client would."""
    with warnings.catch_warnings():
        # The body is an async iterator, made for ASGI; RequestFactory is WSGI.
        warnings.filterwarnings("ignore", "StreamingHttpResponse must consume asynchronous iterators")
        return b"".join(response)


@pytest.fixture
def stored(settings) -> StoredFile:
    name = default_storage.save(NAME, ContentFile(DATA))
    os.utime(default_storage.path(name), (1_700_000_000, 1_700_000_000))
    return StoredFile.stat(name)


def get(stored: StoredFile, method: str = "GET", **headers: str):
    request = getattr(RequestFactory(), method.lower())("/api/v1/tasks/task_x/output", headers=headers)
    return file_response(request, stored, filename="x-normalized.wav", content_type="audio/wav", attachment=True)


def test_a_whole_file_has_its_length_type_validators_and_name(stored):
    response = get(stored)
    assert response.status_code == 200
    assert response["Content-Length"] == str(len(DATA))
    assert response["Content-Type"] == "audio/wav"
    assert response["Accept-Ranges"] == "bytes"
    assert response["ETag"] == stored.etag
    assert response["Last-Modified"] == http_date(1_700_000_000)
    assert response["Content-Disposition"] == 'attachment; filename="x-normalized.wav"'
    assert body(response) == DATA


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=100-199", 100, 199),
        ("bytes=200000-", 200000, len(DATA) - 1),
        ("bytes=-500", len(DATA) - 500, len(DATA) - 1),
        ("bytes=-999999999", 0, len(DATA) - 1),
        ("bytes=1000-99999999", 1000, len(DATA) - 1),
    ],
)
def test_one_range_gets_206_with_exactly_those_bytes(stored, header, first, last):
    response = get(stored, Range=header)
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {first}-{last}/{len(DATA)}"
    assert response["Content-Length"] == str(last - first + 1)
    assert body(response) == DATA[first : last + 1]


@pytest.mark.parametrize("header", [f"bytes={len(DATA)}-", f"bytes={len(DATA) + 10}-{len(DATA) + 20}", "bytes=-0"])
def test_a_range_past_the_end_gets_416_json(stored, header):
    response = get(stored, Range=header)
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(DATA)}"
    assert json.loads(response.content)["error"]["code"] == "range_not_satisfiable"


@pytest.mark.parametrize("header", ["bytes=5-1", "items=0-5", "bytes=0-1,5-9", "bytes=-", "bytes=a-b"])
def test_a_range_that_is_not_one_valid_byte_range_gets_the_whole_file(stored, header):
    response = get(stored, Range=header)
    assert response.status_code == 200
    assert body(response) == DATA


def test_head_has_the_headers_of_get_and_no_body(stored):
    response = get(stored, "HEAD")
    assert response.status_code == 200
    assert response["Content-Length"] == str(len(DATA))
    assert response["ETag"] == stored.etag
    assert response.content == b""
    ranged = get(stored, "HEAD", Range="bytes=10-19")
    assert ranged.status_code == 206 and ranged["Content-Length"] == "10" and ranged.content == b""


def test_if_none_match_with_the_etag_gets_304(stored):
    response = get(stored, If_None_Match=stored.etag)
    assert response.status_code == 304
    assert response["ETag"] == stored.etag
    assert response.content == b""
    assert get(stored, If_None_Match='"other"').status_code == 200


def test_if_modified_since_gets_304_unless_the_file_is_newer(stored):
    assert get(stored, If_Modified_Since=http_date(1_700_000_000)).status_code == 304
    assert get(stored, If_Modified_Since=http_date(1_600_000_000)).status_code == 200


def test_if_range_serves_the_range_only_for_the_same_version(stored):
    assert get(stored, Range="bytes=0-9", If_Range=stored.etag).status_code == 206
    assert get(stored, Range="bytes=0-9", If_Range=http_date(1_700_000_000)).status_code == 206
    changed = get(stored, Range="bytes=0-9", If_Range='"older-version"')
    assert changed.status_code == 200 and body(changed) == DATA
    assert get(stored, Range="bytes=0-9", If_Range=f"W/{stored.etag}").status_code == 200


def test_if_match_with_another_version_gets_412_json(stored):
    response = get(stored, If_Match='"older-version"')
    assert response.status_code == 412
    assert json.loads(response.content)["error"]["code"] == "precondition_failed"


def test_an_empty_file_is_served_and_has_no_satisfiable_range(settings):
    empty = StoredFile.stat(default_storage.save("artifacts/task_y/1/empty.wav", ContentFile(b"")))
    response = get(empty)
    assert response.status_code == 200 and response["Content-Length"] == "0" and body(response) == b""
    assert get(empty, Range="bytes=0-").status_code == 416


# ------------------------------------------------------------------ under Daphne


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> LiveService:
    """A service without a worker."""
    live = start_service(tmp_path_factory.mktemp("downloads"), workers=0)
    yield live
    stop_service(live)


@pytest.fixture(scope="module")
def big(service, tmp_path_factory) -> tuple[str, str]:
    """alice's token and the path of her completed task's 128 MiB output."""
    wav = tmp_path_factory.mktemp("audio") / "tone.wav"
    write_tone(str(wav), 1.0)
    token = service.token("alice")
    task_id = completed_with_output(service, token, service.upload(token, wav)["id"], BIG)
    return token, f"/api/v1/tasks/{task_id}/output"


def test_head_range_and_304_through_the_server(service, big):
    token, path = big
    with service.client(token) as api:
        head = api.head(path)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(BIG)
        assert "chunked" not in head.headers.get("transfer-encoding", "")
        tail = api.get(path, headers={"Range": "bytes=-10"})
        assert tail.status_code == 206 and tail.content == b"\0" * 10
        assert tail.headers["content-range"] == f"bytes {BIG - 10}-{BIG - 1}/{BIG}"
        assert api.get(path, headers={"If-None-Match": head.headers["etag"]}).status_code == 304
        past = api.get(path, headers={"Range": f"bytes={BIG}-"})
        assert past.status_code == 416 and past.json()["error"]["code"] == "range_not_satisfiable"


def test_stalled_and_full_speed_downloads_cost_bounded_memory(service, big):
    token, path = big
    pid = service.daphne.pid
    media = os.path.realpath(service.data_dir / "media")

    def open_media_files() -> int:
        """The server's open files in its media folder (its database connections come and go)."""
        count = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith(media)
        return count

    assert open_media_files() == 0
    before = reset_peak_rss(pid)
    stalled = [stalled_download(service, token, path) for _ in range(5)]
    try:
        assert download(service, token, path) == BIG
        assert peak_rss_since_reset(pid) - before < RSS_BOUND
    finally:
        for sock in stalled:
            sock.close()
    # The stalled downloads end with their clients: files closed, memory not kept.
    wait_until(lambda: open_media_files() == 0, 30, "the downloads' files to be closed")
    assert rss(pid) - before < RSS_BOUND
