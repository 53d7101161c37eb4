"""The identifier-hash key: created once, atomically, owner-only, and never empty."""

from __future__ import annotations

import stat
from concurrent.futures import ProcessPoolExecutor

import pytest

from ml_platform.settings import SettingsError
from ml_platform.store.predictions import id_hash_key


def test_workers_starting_together_share_one_key_that_is_never_empty(tmp_path, monkeypatch):
    monkeypatch.delenv("ML_PLATFORM_ID_HASH_KEY", raising=False)
    with ProcessPoolExecutor(max_workers=4) as pool:
        keys = set(pool.map(id_hash_key, [tmp_path] * 16))
    [key] = keys
    assert len(key) == 64
    path = tmp_path / "secrets" / "id_hash.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["id_hash.key"]  # no temporary file left behind


def test_an_empty_key_file_or_a_short_key_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("ML_PLATFORM_ID_HASH_KEY", raising=False)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "id_hash.key").write_text("\n")
    with pytest.raises(SettingsError, match="empty or too short: restore it"):
        id_hash_key(tmp_path)
    monkeypatch.setenv("ML_PLATFORM_ID_HASH_KEY", "   ")
    with pytest.raises(SettingsError, match="ML_PLATFORM_ID_HASH_KEY is 0 characters"):
        id_hash_key(tmp_path)


def test_a_key_file_replaced_by_a_link_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("ML_PLATFORM_ID_HASH_KEY", raising=False)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "known.txt").write_text("a" * 64)
    (tmp_path / "secrets" / "id_hash.key").symlink_to(tmp_path / "known.txt")
    with pytest.raises(SettingsError, match="cannot be opened"):
        id_hash_key(tmp_path)
