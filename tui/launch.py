"""Start the console for `radiance console`: find the admin key, then run the app."""

from __future__ import annotations

import getpass
import os
import sys

from tui.app import ConsoleApp
from tui.client import RadianceClient

KEY_VARIABLE = "RADIANCE_ADMIN_KEY"


def admin_key(given: str | None) -> str | None:
    """--admin-key, else $RADIANCE_ADMIN_KEY, else a hidden prompt on a terminal."""
    if given:
        return given
    from_env = os.environ.get(KEY_VARIABLE)
    if from_env:
        return from_env
    if not sys.stdin.isatty():
        return None
    try:
        typed = getpass.getpass("Radiance admin key: ").strip()
    except (EOFError, KeyboardInterrupt):
        return None
    return typed or None


def run_console(url: str, given_key: str | None) -> int:
    key = admin_key(given_key)
    if key is None:
        print(
            f"radiance console needs the admin key: --admin-key, ${KEY_VARIABLE} or a terminal "
            "to type it in",
            file=sys.stderr,
        )
        return 2
    ConsoleApp(RadianceClient(url, key)).run()
    return 0
