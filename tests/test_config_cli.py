"""Settings, production refusals, the README's settings table, and the operator CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from portal.config import SETTINGS, ConfigError, load_config
from tests.conftest import audit_events


def test_development_generates_missing_secrets_once(tmp_path):
    first = load_config(str(tmp_path), environ={})
    second = load_config(str(tmp_path), environ={})
    assert first["SECRET_KEY"] == second["SECRET_KEY"] and len(str(first["SECRET_KEY"])) >= 32
    assert first["DATA_KEY"] == second["DATA_KEY"] and len(first["DATA_KEY"]) == 32
    assert (tmp_path / "data_key").stat().st_mode & 0o077 == 0
    assert str(first["SQLALCHEMY_DATABASE_URI"]).endswith(f"{tmp_path}/portal.db")
    assert first["JOBS_INLINE"] is True


@pytest.mark.parametrize("missing", ["SECRET_KEY", "DATA_KEY", "DATABASE_URL", "SEAL_PKCS12_PATH"])
def test_production_refuses_to_start_and_names_what_is_missing(tmp_path, missing):
    env = {
        "PORTAL_ENV": "production",
        "SECRET_KEY": "s" * 40,
        "DATA_KEY": "ab" * 32,
        "DATABASE_URL": "postgresql://portal@db/portal",
        "SEAL_PKCS12_PATH": "/etc/portal/seal.p12",
    }
    del env[missing]
    with pytest.raises(ConfigError, match=missing):
        load_config(str(tmp_path), environ=env)
    assert not (tmp_path / "secret_key").exists()


def test_bad_data_key_is_explained(tmp_path):
    with pytest.raises(ConfigError, match="32 bytes"):
        load_config(str(tmp_path), environ={"DATA_KEY": "c2hvcnQ="})


def test_postgres_urls_use_psycopg3(tmp_path):
    config = load_config(str(tmp_path), environ={"DATABASE_URL": "postgresql://u:p@h/db"})
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u:p@h/db"


def test_readme_documents_every_setting():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for setting in SETTINGS:
        assert re.search(rf"\|\s*`{setting.name}`\s*\|", readme), (
            f"{setting.name} missing from README"
        )


def test_create_user_prints_a_one_time_password(ctx, runner_for):
    result = runner_for(ctx).invoke(
        args=[
            "portal",
            "create-user",
            "Lee@Example.test",
            "--role",
            "compliance",
            "--team",
            "Audit",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "Created lee@example.test (compliance, team Audit)" in result.output
    assert re.search(r"One-time password: [a-z0-9]{4}(-[a-z0-9]{4}){3}", result.output)
    again = runner_for(ctx).invoke(args=["portal", "create-user", "lee@example.test"])
    assert again.exit_code != 0 and "already exists" in again.output
    assert audit_events(ctx, "user.created")[0].actor_type == "cli"


def test_seed_demo_is_idempotent(ctx, runner_for):
    first = runner_for(ctx).invoke(args=["portal", "seed-demo"])
    second = runner_for(ctx).invoke(args=["portal", "seed-demo"])
    assert first.exit_code == second.exit_code == 0
    assert "agent@demo.example" in second.output and "demo-agent-pass-1" in second.output
    assert len(audit_events(ctx, "user.created")) == 3
    assert len(audit_events(ctx, "team.created")) == 1


def test_seed_demo_refuses_production(make_app, runner_for, monkeypatch):
    app = make_app(PRODUCTION=True)
    result = runner_for(app).invoke(args=["portal", "seed-demo"])
    assert result.exit_code != 0 and "not production" in result.output
