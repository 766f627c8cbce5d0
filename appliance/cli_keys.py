"""`radiance keys create|list|revoke`: manage API keys in the database a config names.

For an admin at the box's console. It works beside a running server: the server notices
the change within a second (see ``KeyStore.refresh``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import time

from appliance.accounting.money import is_budget
from appliance.config import LoadedConfig
from appliance.management.key_view import key_json
from appliance.state.database import open_database
from appliance.state.keys import KeyDeclared, KeyNameTaken, KeyNotFound, KeyStore
from appliance.webhooks.events import publish_once


def _fail(message: str) -> int:
    print(f"radiance keys: {message}", file=sys.stderr)
    return 1


def _model_names(loaded: LoadedConfig) -> set[str]:
    return {name for model in loaded.config.models for name in (model.id, *model.aliases)}


async def _create(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    if args.tier is not None and args.tier not in loaded.config.tiers:
        declared = ", ".join(sorted(loaded.config.tiers)) or "none"
        return _fail(f"tier `{args.tier}` is not declared in the config (declared: {declared})")
    models = [m for m in args.models.split(",") if m] if args.models else None
    unknown = sorted(set(models or ()) - _model_names(loaded))
    if unknown:
        return _fail(f"unknown models: {', '.join(unknown)}")
    if args.budget is not None and not is_budget(args.budget):
        return _fail("--budget must be a positive USD decimal with at most six decimals")
    expires = None
    if args.expires:
        try:
            moment = datetime.datetime.fromisoformat(args.expires)
        except ValueError:
            return _fail(f"--expires `{args.expires}` is not an ISO 8601 date and time")
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        expires = moment.timestamp()
        if expires <= time.time():
            return _fail("--expires is in the past")
    db = await open_database(loaded.database_path)
    try:
        key, secret = await KeyStore(db).create(
            args.name,
            tier=args.tier,
            models=models,
            budget_usd=args.budget,
            budget_period=args.budget_period,
            expires_at=expires,
        )
        # Queued in the database; a running server's webhook sender delivers it.
        await publish_once(db, "key.created", {"key": key_json(key)})
    except KeyNameTaken:
        return _fail(f"a key named `{args.name}` exists")
    finally:
        await db.close()
    print(f"created key `{key.name}` ({key.id}, tier {key.tier or 'none'})")
    print(f"secret: {secret}")
    print("Store the secret now: it is not shown again, and only its hash is kept.")
    return 0


async def _list(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    db = await open_database(loaded.database_path)
    try:
        keys = await KeyStore(db).all()
    finally:
        await db.close()
    if args.json:
        print(json.dumps([key_json(k) for k in keys], indent=2))
        return 0
    now = time.time()
    print(f"{'NAME':<20} {'ID':<21} {'PREFIX':<9} {'TIER':<10} {'SOURCE':<7} STATUS")
    for k in keys:
        print(
            f"{k.name:<20} {k.id:<21} {k.prefix:<9} {k.tier or '-':<10} {k.source:<7} "
            f"{k.status(now)}"
        )
    return 0


async def _revoke(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    db = await open_database(loaded.database_path)
    try:
        store = KeyStore(db)
        was_active = (await store.get(args.key)).revoked_at is None
        key = await store.revoke(args.key)
        if was_active:
            await publish_once(db, "key.revoked", {"key": key_json(key)})
    except KeyNotFound:
        return _fail(f"no key with the name or id `{args.key}`")
    except KeyDeclared:
        return _fail(f"`{args.key}` is declared in the config; remove it there and restart")
    finally:
        await db.close()
    print(f"revoked key `{key.name}` ({key.id})")
    return 0


def run(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    action = {"create": _create, "list": _list, "revoke": _revoke}[args.action]
    return asyncio.run(action(loaded, args))


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser("keys", help="create, list or revoke API keys")
    actions = keys.add_subparsers(dest="action", required=True)

    def config_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--config", default="radiance.yaml", help="the config whose database to use"
        )

    create = actions.add_parser("create", help="create a key and print its secret once")
    config_option(create)
    create.add_argument("--name", required=True)
    create.add_argument("--tier", help="a tier declared in the config")
    create.add_argument("--models", help="comma-separated allow-list of model ids or aliases")
    create.add_argument("--budget", help="USD per period, a decimal such as 25.00")
    create.add_argument("--budget-period", choices=["day", "month"], default="month")
    create.add_argument("--expires", help="ISO 8601 date and time; no offset means UTC")

    listing = actions.add_parser("list", help="list keys (never their secrets)")
    config_option(listing)
    listing.add_argument("--json", action="store_true", help="print JSON")

    revoke = actions.add_parser("revoke", help="revoke a key by name or id")
    config_option(revoke)
    revoke.add_argument("key", help="the key's name or id")
