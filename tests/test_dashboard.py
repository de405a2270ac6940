"""The dashboard page at `/`: served without login, CSP-friendly, offline, with the kinds' options."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

from django.contrib.staticfiles import finders

from tasks_app.audio.registry import processors

STATIC = [
    "tasks_app/dashboard.js",
    "tasks_app/format.js",
    "tasks_app/dashboard.css",
    "tasks_app/audio-tasks-client.js",
    "tasks_app/favicon.svg",
    "tasks_app/webhook-deliveries.js",
]


class PageParser(HTMLParser):
    """Collects scripts, stylesheets, inline styles and the embedded kinds JSON."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.stylesheets: list[str] = []
        self.inline: list[str] = []
        self.data_blocks: dict[str, str] = {}
        self._block: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Record what a strict CSP would have to allow."""
        attributes = dict(attrs)
        if "style" in attributes or any(name.startswith("on") for name in attributes):
            self.inline.append(tag)
        if tag == "style":
            self.inline.append("style")
        if tag == "script":
            self.scripts.append(attributes)
            if attributes.get("type") == "application/json":
                self._block = attributes.get("id")
        if tag == "link" and attributes.get("rel") == "stylesheet":
            self.stylesheets.append(attributes.get("href") or "")

    def handle_data(self, data: str) -> None:
        """Keep the text of a JSON data block."""
        if self._block:
            self.data_blocks[self._block] = self.data_blocks.get(self._block, "") + data

    def handle_endtag(self, tag: str) -> None:
        """Leave a data block."""
        if tag == "script":
            self._block = None


def parse(html: str) -> PageParser:
    """Parse the dashboard HTML."""
    parser = PageParser()
    parser.feed(html)
    return parser


def test_root_serves_the_dashboard_without_login(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert "<h1>Audio tasks</h1>" in response.content.decode()


def test_dashboard_has_no_inline_script_or_style(client):
    page = parse(client.get("/").content.decode())
    executable = [s for s in page.scripts if s.get("type") != "application/json"]
    assert executable == [
        {"type": "module", "src": "/static/tasks_app/dashboard.js"},
        {"type": "module", "src": "/static/tasks_app/webhook-deliveries.js"},
    ]
    assert page.stylesheets == ["/static/tasks_app/dashboard.css"]
    assert page.inline == []


def test_dashboard_embeds_every_kind_with_its_option_schema(client):
    page = parse(client.get("/").content.decode())
    kinds = json.loads(page.data_blocks["task-kinds"])
    assert [k["kind"] for k in kinds] == [p.kind for p in processors()]
    normalize = next(k for k in kinds if k["kind"] == "normalize")
    assert normalize["options"]["output_format"]["choices"] == ["mp3", "opus", "m4a", "flac", "wav"]
    assert normalize["options"]["target_lufs"]["default"] == -16


def test_dashboard_static_files_exist_and_load_nothing_from_the_internet(client):
    html = client.get("/").content.decode()
    texts = [html]
    for name in STATIC:
        found = finders.find(name)
        assert found, name
        texts.append(Path(found).read_text())
    for text in texts:
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
        assert not re.search(r"""(import|fetch)\s*\(?\s*["'](https?:)?//""", text)


def test_dashboard_refuses_writes(client):
    assert client.post("/").status_code == 405


def test_dashboard_runs_under_a_policy_without_inline_scripts(client):
    policy = client.get("/")["Content-Security-Policy"]
    directives = {d.split()[0]: d.split()[1:] for d in policy.split("; ")}
    assert directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert directives["connect-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert "unsafe-inline" not in policy
    # Other HTML pages (the browsable API, Swagger UI) keep the default page policy.
    assert "'unsafe-inline'" in client.get("/api/v1/", HTTP_ACCEPT="text/html")["Content-Security-Policy"]


def test_dashboard_links_its_favicon(client):
    html = client.get("/").content.decode()
    assert '<link rel="icon" href="/static/tasks_app/favicon.svg" type="image/svg+xml">' in html
    assert finders.find("tasks_app/favicon.svg")
