"""No default secret: a random key kept in DATA_DIR; strings in the repository sign nothing."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import jwt
import pytest
from django.conf import settings
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.utils import get_md5_hash_password

ROOT = Path(__file__).resolve().parent.parent
# Every quoted string without spaces that could serve as a signing key.
LITERAL = re.compile(r"""["']([^"'\s]{12,200})["']""")
PRINT_KEY = "from django.conf import settings; print(settings.SECRET_KEY)"


def settings_key(data_dir: Path, **extra: str) -> subprocess.CompletedProcess:
    """Load the settings in a fresh process without DJANGO_SECRET_KEY; print the key."""
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SECRET_KEY", "DJANGO_PRODUCTION", "DATABASE_URL"}}
    env.update({"DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "project.settings", **extra})
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {PRINT_KEY}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def repository_strings() -> set[str]:
    """Key-like string literals in every file of the project and in the settings' git history.

    Without git (a copy of the tree rather than a clone) the files are walked instead, and
    there is no history to read.
    """
    found: set[str] = set()
    for path in project_files():
        try:
            found.update(LITERAL.findall(path.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
    history = git("log", "-p", "--all", "--", "project/")
    found.update(LITERAL.findall(history or ""))
    return found


def git(*args: str) -> str | None:
    """What a git command prints in the repository, or None without git or a clone."""
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (FileNotFoundError, subprocess.CalledProcessError):
        return None


def project_files() -> list[Path]:
    """The tracked files, or without git every file outside what is installed or generated."""
    listed = git("ls-files")
    if listed is not None:
        return [ROOT / name for name in listed.split()]
    generated = {".git", ".venv", "node_modules", "var", "__pycache__"}
    return [p for p in ROOT.rglob("*") if p.is_file() and not generated & set(p.relative_to(ROOT).parts)]


def forged_access_token(user: Any, key: str) -> str:
    """A simplejwt-shaped access token for `user`, signed with `key` (with the password-hash claim
    that lets a password change revoke tokens)."""
    now = int(time.time())
    claims = {
        "token_type": "access",
        "exp": now + 600,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "user_id": str(user.pk),
        api_settings.REVOKE_TOKEN_CLAIM: get_md5_hash_password(user.password),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns about short HMAC keys
        return jwt.encode(claims, key, algorithm="HS256")


def test_key_is_generated_once_with_mode_600_and_reused(tmp_path):
    first = settings_key(tmp_path)
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first.stdout.strip()) >= 50
    second = settings_key(tmp_path)
    assert second.stdout == first.stdout
    assert settings_key(tmp_path.parent / f"{tmp_path.name}-other").stdout != first.stdout


def test_production_mode_still_requires_a_key(tmp_path):
    result = settings_key(tmp_path, DJANGO_PRODUCTION="1")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_environment_key_wins_and_no_file_is_written(tmp_path):
    result = settings_key(tmp_path, DJANGO_SECRET_KEY="from-the-environment-" + "x" * 40)
    assert result.stdout.strip() == "from-the-environment-" + "x" * 40
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.django_db
def test_tokens_signed_with_any_key_string_in_the_repository_get_401(api_client, user):
    candidates = repository_strings()
    assert "dev-only-insecure-secret-key-change-me-in-production-0123456789" in candidates
    assert settings.SECRET_KEY not in candidates
    # The forged shape is right: signed with the real key it is accepted.
    genuine = forged_access_token(user, settings.SECRET_KEY)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {genuine}")
    assert api_client.get("/api/v1/tasks/").status_code == 200
    accepted = []
    for key in sorted(candidates):
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged_access_token(user, key)}")
        if api_client.get("/api/v1/tasks/").status_code != 401:
            accepted.append(key)
    assert accepted == []
