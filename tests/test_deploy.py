"""The deployment for a small unit (issue 16): deploy/Dockerfile, deploy/compose.yaml
(pacsdash, PostgreSQL, an S3 server), deploy/pacsdash.toml and deploy/make-secrets.sh.

No Docker daemon runs where these tests run, so the images are not built here; what
is checked is what can go wrong without one: the config is one pacsdash accepts, no
secret is written in the compose file or the config, every secret comes from a file
that make-secrets.sh makes private, and the containers' wiring agrees with the config.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))


def test_the_compose_file_runs_pacsdash_postgresql_and_an_s3_server():
    services = _compose()["services"]
    assert {"pacsdash", "postgres", "minio", "bucket"} <= set(services)
    pacsdash = services["pacsdash"]
    assert pacsdash["build"]["dockerfile"] == "deploy/Dockerfile"
    assert pacsdash["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert {p.split(":")[-1].split()[0] for p in pacsdash["ports"]} == {"8042", "4242"}


def test_no_secret_is_written_in_the_compose_file_or_the_config():
    compose = _compose()
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if any(word in key.upper() for word in ("PASSWORD", "SECRET", "KEY")):
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), (name, key)
    assert all(entry["file"].startswith("./secrets/") for entry in compose["secrets"].values())
    import tomllib

    config = tomllib.loads((DEPLOY / "pacsdash.toml").read_text(encoding="utf-8"))
    values = [str(v) for table in config.values() if isinstance(table, dict) for v in table.values()]
    assert not any(":" in v.split("@")[0].removeprefix("postgresql://") for v in values if v.startswith("postgresql"))
    assert not any(word in key.lower() for table in config.values() if isinstance(table, dict) for key in table
                   for word in ("password", "secret", "access_key"))
    assert "secrets/" in (DEPLOY / ".gitignore").read_text(encoding="utf-8")


def test_the_dockerfile_runs_serve_as_an_unprivileged_user():
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert "\nUSER pacsdash\n" in text and text.index("USER pacsdash") < text.index("ENTRYPOINT")
    assert '"serve"' in text and "/api/health" in text


def test_the_config_is_one_pacsdash_accepts_and_matches_the_containers():
    from pacsdash.config import load_settings

    settings = load_settings(DEPLOY, DEPLOY / "pacsdash.toml")
    assert settings.index.url.startswith("postgresql://pacsdash@postgres:5432/")
    assert settings.storage.url == "s3://pacsdash/archive" and settings.storage.endpoint_url == "http://minio:9000"
    compose = _compose()
    assert compose["services"]["postgres"]["environment"]["POSTGRES_DB"] == settings.index.url.rsplit("/", 1)[-1]
    assert "local/pacsdash" in " ".join(compose["services"]["bucket"]["command"])


def test_make_secrets_writes_private_files_libpq_and_boto3_can_read(tmp_path):
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy, ignore=shutil.ignore_patterns("secrets"))
    done = subprocess.run(["sh", str(copy / "make-secrets.sh")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    secrets = copy / "secrets"
    for path in secrets.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    password = (secrets / "postgres_password").read_text().strip()
    assert len(password) >= 24
    assert (secrets / "pgpass").read_text() == f"postgres:5432:pacsdash:pacsdash:{password}\n"
    import configparser

    credentials = configparser.ConfigParser()
    credentials.read(secrets / "aws_credentials")
    assert credentials["default"]["aws_access_key_id"] == (secrets / "s3_access_key").read_text().strip()
    again = subprocess.run(["sh", str(copy / "make-secrets.sh")], capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and (secrets / "postgres_password").read_text().strip() == password
