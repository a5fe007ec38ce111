"""The API server's database, accounts and settings: migrations keep data and match the models,
keys are stored only as hashes, the CLI manages users and keys, settings layer file < env < flags."""

import json
import os
import stat
import subprocess
import sys

import pytest

pytest.importorskip("alembic")

from sqlalchemy import create_engine, inspect, text  # noqa: E402

from atelier.cli import main  # noqa: E402
from atelier.server import accounts  # noqa: E402
from atelier.server.config import ServerSettings, load_settings  # noqa: E402
from atelier.server.db import Database, migrate  # noqa: E402
from atelier.server.models import Base  # noqa: E402


def test_a_database_of_the_first_revision_upgrades_and_keeps_its_data(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate(engine, "0001")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO users (id, name, created) VALUES (1, 'alice', '2026-01-01 00:00:00')"))
        connection.execute(text("INSERT INTO assets (id, user_id, path, kind, metadata, created) VALUES "
                                "('img_1', 1, '1/img_1.png', 'text_to_image', '{\"seed\": 7}', '2026-01-01 00:00:00')"))
    migrate(engine)            # to the newest revision, twice: the second is a no-op
    migrate(engine)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT name FROM users")).scalars().all() == ["alice"]
        assert json.loads(connection.execute(text("SELECT metadata FROM assets")).scalar()) == {"seed": 7}
    engine.dispose()


def test_the_migrations_build_exactly_the_models_tables(tmp_path):
    """A change to models.py without its Alembic revision fails here, before it reaches a user's data."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = create_engine(f"sqlite:///{tmp_path / 'new.db'}")
    migrate(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
        assert set(inspect(connection).get_table_names()) == {"users", "api_keys", "assets", "usage", "jobs",
                                                               "sessions", "likes", "reports", "feedback",
                                                               "alembic_version"}
    engine.dispose()


def test_keys_are_stored_only_as_hashes_and_revocation_takes_effect(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'a.db'}")
    database.migrate()
    with database.session() as session:
        accounts.create_user(session, "alice")
        key, secret = accounts.create_key(session, "alice", "admin")
    assert secret.startswith("atl_") and len(secret) == 47 and key.prefix == secret[:12]
    with database.engine.connect() as connection:
        dump = "\n".join(str(row) for row in connection.execute(text("SELECT * FROM api_keys")))
    assert secret not in dump and secret[12:] not in dump and accounts.hash_key(secret) in dump
    with database.session() as session:
        principal = accounts.authenticate(session, secret)
        assert (principal.user_name, principal.scope) == ("alice", "admin")
        assert accounts.authenticate(session, secret[:-1] + "x") is None
        with pytest.raises(accounts.AccountError, match="exists already"):
            accounts.create_user(session, "alice")
        with pytest.raises(accounts.AccountError, match="no user named 'bob'"):
            accounts.create_key(session, "bob")
        with pytest.raises(accounts.AccountError, match="unknown scope"):
            accounts.create_key(session, "alice", "root")
        accounts.revoke_key(session, key.prefix)
    with database.session() as session:
        assert accounts.authenticate(session, secret) is None
    database.close()


def test_cli_users_and_keys(tmp_path, capsys):
    data = ["--data", str(tmp_path)]
    main(["users", "create", "alice", *data])
    main(["keys", "create", "--user", "alice", "--scope", "admin", *data])
    out = capsys.readouterr()
    secret = out.out.strip().splitlines()[-1]
    assert secret.startswith("atl_") and "shown only now" in out.err
    main(["keys", "list", *data])
    listing = capsys.readouterr().out
    assert secret[:12] in listing and "admin" in listing and "active" in listing and secret not in listing
    main(["keys", "revoke", secret[:12], *data])
    main(["keys", "list", "--user", "alice", *data])
    assert "revoked" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="exists already"):
        main(["users", "create", "alice", *data])
    with pytest.raises(SystemExit, match="no user named 'carol'"):
        main(["keys", "create", "--user", "carol", *data])


def test_settings_come_from_the_file_then_the_environment_then_flags(tmp_path):
    config = tmp_path / "server.toml"
    config.write_text('[server]\nport = 9000\nrate_limit = 5\ncors_origins = ["https://a.example"]\n'
                      f'data = "{tmp_path}"\n')
    env = {"ATELIER_PORT": "9100", "ATELIER_DAILY_QUOTA": "50", "ATELIER_TEXT_ENCODER": "ignored"}
    settings = load_settings(config, env, port=9200, threads=None)
    assert (settings.port, settings.rate_limit, settings.daily_quota) == (9200, 5, 50)
    assert settings.cors_origins == ("https://a.example",) and settings.data == tmp_path
    assert load_settings(None, {"ATELIER_CORS_ORIGINS": "https://a.example, https://b.example"}).cors_origins == (
        "https://a.example", "https://b.example")
    assert load_settings(None, {}).host == "127.0.0.1" and load_settings(None, {}).cors_origins == ()
    config.write_text("prot = 9000\n")
    with pytest.raises(ValueError, match="unknown server settings prot"):
        load_settings(config, {})
    with pytest.raises(ValueError, match=r"\$ATELIER_PORT: port must be int"):
        load_settings(None, {"ATELIER_PORT": "eighty"})
    with pytest.raises(ValueError, match="rate_limit must be at least 1"):
        load_settings(None, {}, rate_limit=0)
    jobs = load_settings(None, {"ATELIER_WEBHOOK_ALLOW_PRIVATE": "true", "ATELIER_REDIS": "redis://r:6379/0",
                                "ATELIER_SHUTDOWN_GRACE": "2.5"}, max_batch=4)
    assert (jobs.webhook_allow_private, jobs.redis, jobs.shutdown_grace, jobs.max_batch) == (
        True, "redis://r:6379/0", 2.5, 4)
    assert load_settings(None, {"ATELIER_WEBHOOK_ALLOW_PRIVATE": "off"}).webhook_allow_private is False
    with pytest.raises(ValueError, match=r"\$ATELIER_WEBHOOK_ALLOW_PRIVATE: webhook_allow_private must be bool"):
        load_settings(None, {"ATELIER_WEBHOOK_ALLOW_PRIVATE": "perhaps"})
    with pytest.raises(ValueError, match="port must be int"):
        load_settings(None, {}, port=True)
    with pytest.raises(ValueError, match="shutdown_grace must be above 0"):
        load_settings(None, {}, shutdown_grace=0)


def test_a_cli_user_gets_a_studio_password(tmp_path, monkeypatch, capsys):
    import io

    from atelier.server.accounts import check_password

    main(["users", "create", "erin", "--data", str(tmp_path)])
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    main(["users", "password", "erin", "--data", str(tmp_path)])
    assert "set the studio password of 'erin'" in capsys.readouterr().out
    database = Database(f"sqlite:///{tmp_path / 'atelier.db'}")
    with database.session() as session:
        assert check_password(session, "erin", "correct horse battery").name == "erin"
        assert check_password(session, "erin", "wrong horse battery") is None
    database.close()
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    with pytest.raises(SystemExit, match="at least 8 characters"):
        main(["users", "password", "erin", "--data", str(tmp_path)])


def test_atelier_worker_needs_a_queue(tmp_path):
    from atelier.cli import main

    with pytest.raises(SystemExit, match="atelier worker needs --redis URL"):
        main(["worker", "--data", str(tmp_path)])


def test_the_signing_secret_is_made_once_and_kept_private(tmp_path):
    settings = ServerSettings(data=tmp_path / "data")
    first = settings.signing_secret()
    assert len(first) == 64 and settings.signing_secret() == first
    assert stat.S_IMODE(os.stat(tmp_path / "data" / "secret").st_mode) == 0o600
    assert ServerSettings(data=tmp_path, secret="given").signing_secret() == b"given"
    assert "given" not in repr(ServerSettings(data=tmp_path, secret="given"))


def test_the_server_package_imports_without_torch():
    code = ("import sys, atelier.server.app, atelier.cli; atelier.cli.build_parser(); "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.stdout.strip() == "False"
