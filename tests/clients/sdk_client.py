#!/usr/bin/env python3
"""A scripted MCP client built on the official Python SDK (`mcp`, 2.3.x).

Connects over Streamable HTTP, sends a bearer token, trusts a private CA, and
runs the steps given on the command line, printing one JSON line per step.

    sdk_client.py --url URL [--token T] [--cafile PEM] [--timeout S] STEP...

Steps:
    list                    tools/list      -> {"step":"list","tools":[names]}
    call NAME JSONARGS      tools/call      -> {"step":"call","tool":NAME,"is_error":bool,"text":str}
    ping                    ping            -> {"step":"ping","ok":true}

A JSON-RPC / MCP error answer to a step is data, not a failure:
    {"step":"call","tool":NAME,"error_code":int,"message":str}
Exit status: 0 when every step ran (whatever the answers were); 2 on bad
usage; 3 when the connection or the initialize handshake failed (a line
{"step":"connect","error":...} says why); 4 when a step timed out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def parse_steps(words: list[str]) -> list[tuple[str, ...]]:
    steps: list[tuple[str, ...]] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w in ("list", "ping"):
            steps.append((w,))
            i += 1
        elif w == "call":
            if i + 2 >= len(words):
                raise ValueError("call needs NAME and JSONARGS")
            name, raw = words[i + 1], words[i + 2]
            try:
                args = json.loads(raw)
            except json.JSONDecodeError as e:
                raise ValueError(f"call {name}: JSONARGS is not JSON: {e}") from e
            if not isinstance(args, dict):
                raise ValueError(f"call {name}: JSONARGS must be a JSON object")
            steps.append(("call", name, raw))
            i += 3
        else:
            raise ValueError(f"unknown step {w!r} (expected list, call NAME JSONARGS, ping)")
    return steps


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def content_text(result: Any) -> str:
    parts = []
    for c in getattr(result, "content", None) or []:
        text = getattr(c, "text", None)
        if isinstance(text, str):
            parts.append(text)
    return "\n".join(parts)


def flatten(exc: BaseException) -> list[BaseException]:
    """Leaf exceptions of a (possibly nested) exception group."""
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for e in exc.exceptions:
            out.extend(flatten(e))
        return out
    return [exc]


async def run(url: str, token: str | None, timeout: float, steps: list[tuple[str, ...]]) -> int:
    import anyio
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client
    from mcp.shared.exceptions import MCPError

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    state = {"connected": False, "done": 0}

    async def body() -> None:
        async with create_mcp_http_client(headers=headers) as http:
            async with streamable_http_client(url, http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    with anyio.fail_after(timeout):
                        await session.initialize()
                    state["connected"] = True
                    for step in steps:
                        kind = step[0]
                        try:
                            with anyio.fail_after(timeout):
                                if kind == "list":
                                    res = await session.list_tools()
                                    emit({"step": "list", "tools": [t.name for t in res.tools]})
                                elif kind == "ping":
                                    await session.send_ping()
                                    emit({"step": "ping", "ok": True})
                                else:
                                    name, args = step[1], json.loads(step[2])
                                    res = await session.call_tool(name, args)
                                    emit(
                                        {
                                            "step": "call",
                                            "tool": name,
                                            "is_error": bool(res.is_error),
                                            "text": content_text(res),
                                        }
                                    )
                        except MCPError as e:
                            out: dict[str, Any] = {"step": kind, "error_code": e.code, "message": e.message}
                            if kind == "call":
                                out["tool"] = step[1]
                            emit(out)
                        state["done"] += 1

    try:
        await body()
    except BaseException as exc:  # noqa: BLE001 - report every failure as one JSON line
        leaves = flatten(exc)
        if any(isinstance(e, TimeoutError) for e in leaves):
            emit({"step": "timeout", "completed": state["done"], "error": "step timed out"})
            return 4
        if any(isinstance(e, KeyboardInterrupt) for e in leaves):
            raise
        msg = "; ".join(f"{type(e).__name__}: {e}" for e in leaves)
        if not state["connected"]:
            emit({"step": "connect", "error": msg})
            return 3
        if state["done"] == len(steps):
            # Every step ran; a failure while closing the session is not the test's business,
            # but say so on stderr.
            print(f"sdk_client: error on close: {msg}", file=sys.stderr)
            return 0
        emit({"step": "abort", "completed": state["done"], "error": msg})
        return 3
    return 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="MCP endpoint, e.g. https://127.0.0.1:8443/mcp")
    p.add_argument("--token", default=None, help="bearer token sent as Authorization header")
    p.add_argument("--cafile", default=None, help="PEM file of CA certificates to trust")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per step (default 30)")
    p.add_argument("steps", nargs=argparse.REMAINDER, help="list | call NAME JSONARGS | ping ...")
    ns = p.parse_args(argv)
    try:
        steps = parse_steps(ns.steps)
    except ValueError as e:
        p.error(str(e))
    if not steps:
        p.error("no steps given")
    if ns.cafile:
        if not os.path.isfile(ns.cafile):
            p.error(f"--cafile {ns.cafile}: no such file")
        # httpx2 (under the SDK's create_mcp_http_client) builds its default
        # SSL context from SSL_CERT_FILE when set: trust exactly this CA file.
        os.environ["SSL_CERT_FILE"] = ns.cafile
        os.environ.pop("SSL_CERT_DIR", None)

    import anyio

    return anyio.run(run, ns.url, ns.token, ns.timeout, steps)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
