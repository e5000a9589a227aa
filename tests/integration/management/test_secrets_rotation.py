"""Destination secrets at rest: encrypted with a key id, decrypted for use, and still
readable after ``untrace secrets rotate`` once the old master key is gone."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from untrace_server.control import crypto
from untrace_server.control.store import ControlStore

UNTRACE = str(Path(sys.executable).parent / "untrace")


async def test_rotate_rewraps_and_old_key_can_go(tmp_path: Path) -> None:
    data = tmp_path / "data"
    url = f"sqlite:///{data / 'control.db'}"
    keyring = crypto.load_keyring(None, [], data)
    store = ControlStore(url, b"s", keyring)
    await store.start()
    await store.put_destination("acme", "lf", "langfuse", {"public_key": "p", "secret_key": "sk-1"})
    await store.close()
    row = sqlite3.connect(data / "control.db").execute("SELECT config FROM destinations").fetchone()
    stored = json.loads(row[0])
    assert stored["secret_key"].startswith(f"enc:v1:{keyring.current}:") and "sk-1" not in row[0]
    out = subprocess.run(  # noqa: ASYNC221 - the CLI, as a user runs it
        [UNTRACE, "secrets", "rotate", "--data-dir", str(data)], capture_output=True, text=True
    )
    assert out.returncode == 0 and "1 destinations" in out.stdout, out.stderr
    newest = (data / "master.keys").read_text().split()[0]
    only_new = crypto.Keyring([crypto._decode_key(newest)])
    store = ControlStore(url, b"s", only_new)
    await store.start()
    [dest] = await store.list_destinations("acme")
    await store.close()
    assert dest.config["secret_key"] == "sk-1"
