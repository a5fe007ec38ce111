"""atelier serve, worker, users, keys and feedback: the HTTP API server, the workers that run its
queued jobs, its accounts and keys, and the community's feedback exported as training data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from atelier.cli.common import _not_negative, _positive


def add_parsers(commands) -> None:
    serve = commands.add_parser("serve", help="the HTTP API (OpenAI-compatible image endpoints) on this machine")
    _server_options(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=_not_negative, help="port (default 8000)")
    _job_options(serve, "redis://HOST:PORT/DB: queue jobs on Redis for `atelier worker` processes (default: this "
                        "process runs them)")
    serve.set_defaults(run=_serve)

    feedback = commands.add_parser("feedback", help="the community's images and preferences as training data")
    feedback.add_argument("action", choices=["export"])
    feedback.add_argument("output", type=Path, help="a new folder: images/ with .txt captions, preferences.jsonl")
    _server_options(feedback)
    feedback.set_defaults(run=_feedback)

    worker = commands.add_parser("worker", help="run the jobs that API servers queue on Redis (atelier serve --redis)")
    _server_options(worker)
    _job_options(worker, "redis://HOST:PORT/DB, the same as the servers' --redis")
    worker.add_argument("--name", help="this worker's name in job records (default worker-HOST-PID)")
    worker.set_defaults(run=_worker)

    users = commands.add_parser("users", help="the API server's users")
    users.add_argument("action", choices=["create", "list", "password"])
    users.add_argument("name", nargs="?", help="create: the new user's name; password: whose studio password to set")
    _server_options(users)
    users.set_defaults(run=_accounts)

    keys = commands.add_parser("keys", help="the API server's keys: create (shown once), list, revoke")
    keys.add_argument("action", choices=["create", "list", "revoke"])
    keys.add_argument("prefix", nargs="?", help="revoke: the key's first 12 characters (atl_...)")
    keys.add_argument("--user", help="create: whose key; list: only this user's")
    keys.add_argument("--scope", choices=["user", "admin"], default="user")
    _server_options(keys)
    keys.set_defaults(run=_accounts)


def _server_settings(args: argparse.Namespace):
    """The server's settings: defaults, then --config, then ATELIER_* variables, then these flags."""
    from atelier.server.config import load_settings

    flags = {name: getattr(args, name, None) for name in ("host", "port", "model", "data", "threads", "redis",
                                                          "max_batch")}
    return load_settings(args.config, **flags)


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from atelier.server.app import create_app
    from atelier.server.logs import configure

    settings = _server_settings(args)
    configure(settings.log_level)
    # access_log off: the server logs each request itself, without the query string (signed links)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, access_log=False, log_config=None)


def _worker(args: argparse.Namespace) -> None:
    from atelier.server.jobs.consumer import run_worker
    from atelier.server.logs import configure

    settings = _server_settings(args)
    configure(settings.log_level)
    run_worker(settings, args.name)


def _feedback(args: argparse.Namespace) -> None:
    from atelier.server.db import Database
    from atelier.server.flywheel import export
    from atelier.server.storage import LocalStorage

    settings = _server_settings(args)
    database = Database(settings.database_url)
    database.migrate()
    try:
        manifest = export(database, LocalStorage(settings.data / "assets"), args.output)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    finally:
        database.close()
    print(f"wrote {manifest['images']} captioned images and {manifest['pairs']} preference pairs to {args.output} "
          f"(train on it: atelier train model --data {args.output} ...)")


def _accounts(args: argparse.Namespace) -> None:
    """atelier users create|list|password and atelier keys create|list|revoke, on the server's database."""
    from atelier.server import accounts
    from atelier.server.db import Database

    settings = _server_settings(args)
    database = Database(settings.database_url)
    database.migrate()
    try:
        with database.session() as session:
            if args.command == "users" and args.action == "create":
                if not args.name:
                    raise SystemExit("error: atelier users create NAME")
                user = accounts.create_user(session, args.name)
                print(f"created user {user.name!r} (id {user.id}) in {settings.data}; give it a key with: "
                      f"atelier keys create --user {user.name}")
            elif args.command == "users" and args.action == "password":
                if not args.name:
                    raise SystemExit("error: atelier users password NAME (the password is read from the terminal, "
                                     "or one line of standard input)")
                accounts.set_password(session, args.name, _read_password())
                print(f"set the studio password of {args.name!r}")
            elif args.command == "users":
                for user in accounts.list_users(session):
                    print(f"{user.id}\t{user.name}\t{user.created:%Y-%m-%d %H:%M}")
            elif args.action == "create":
                if not args.user:
                    raise SystemExit("error: atelier keys create --user NAME [--scope user|admin]")
                key, text = accounts.create_key(session, args.user, args.scope)
                print(text)
                print(f"(a {key.scope} key for {args.user}; it is shown only now: the server keeps only its hash; "
                      f"revoke it with atelier keys revoke {key.prefix})", file=sys.stderr)
            elif args.action == "revoke":
                if not args.prefix:
                    raise SystemExit("error: atelier keys revoke PREFIX (the first 12 characters, atl_...)")
                key = accounts.revoke_key(session, args.prefix)
                print(f"revoked {key.prefix}")
            else:
                for key, name in accounts.list_keys(session, args.user):
                    state = f"revoked {key.revoked:%Y-%m-%d}" if key.revoked else "active"
                    print(f"{key.prefix}\t{name}\t{key.scope}\t{key.created:%Y-%m-%d %H:%M}\t{state}")
    finally:
        database.close()


def _read_password() -> str:
    """A new password: asked twice on a terminal, else the first line of standard input."""
    import getpass

    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass("new studio password: ")
    if getpass.getpass("again: ") != password:
        raise SystemExit("error: the two passwords differ; nothing was changed")
    return password


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="a TOML file of server settings (atelier/server/config.py)")
    parser.add_argument("--data", type=Path, help="the server's data folder: database, images, signing secret "
                                                  "(default ~/.atelier, or $ATELIER_DATA)")


def _job_options(parser: argparse.ArgumentParser, redis_help: str) -> None:
    """The options of a process that runs jobs: atelier serve and atelier worker."""
    parser.add_argument("--model", type=Path, help="a model folder (default: the shipped atelier/weights/default)")
    parser.add_argument("--threads", type=_positive, help="torch CPU threads (default 2)")
    parser.add_argument("--redis", help=redis_help)
    parser.add_argument("--max-batch", type=_positive, help="compatible jobs run together, up to this many (default 8)")
