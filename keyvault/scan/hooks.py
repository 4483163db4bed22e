"""Plain git hooks for teams without the pre-commit framework, and `keyvault hook install`.

The shims (the same text as `hooks/pre-commit` and `hooks/pre-push` in the repository) run
`keyvault scan --staged` / `keyvault scan --pre-push`, preferring the Python that installed
them, then `keyvault` on PATH. When neither can be found the commit is refused: a leak gate
that silently opens when its tool goes missing is no gate.

Install respects `core.hooksPath` (via `git rev-parse --git-path hooks`, which also finds
the shared hooks directory of a linked worktree), and never replaces a hook it did not write
unless told to (`--force`, which keeps the old one beside it as `<hook>.keyvault-backup`).
"""

from __future__ import annotations

import os
import stat

from keyvault.errors import KeyvaultError
from keyvault.scan import gitio

MARKER = "# keyvault-hook:"

_SHIM = """#!/bin/sh
# keyvault {hook} hook: {what}
# Installed by `keyvault hook install{flag}`; bypass once with `git {verb} --no-verify`.
{marker} {hook} v1
KEYVAULT_PYTHON="${{KEYVAULT_PYTHON:-{python}}}"
if [ -n "$KEYVAULT_PYTHON" ] && [ -x "$KEYVAULT_PYTHON" ]; then
    exec "$KEYVAULT_PYTHON" -m keyvault scan {args}
fi
if command -v keyvault >/dev/null 2>&1; then
    exec keyvault scan {args}
fi
echo "keyvault: the {hook} hook cannot find keyvault (pip install keyvault-anthropic);" >&2
echo "keyvault: refusing to {verb} unchecked (set KEYVAULT_PYTHON, or bypass with --no-verify)" >&2
exit 1
"""

HOOKS = {
    "pre-commit": ("refuse a commit that adds an Anthropic credential.", "--staged", "commit", ""),
    "pre-push": ("refuse a push whose new commits hold an Anthropic credential.", "--pre-push", "push",
                 " --pre-push"),
}


def shim(hook: str, python: str = "") -> str:
    what, args, verb, flag = HOOKS[hook]
    return _SHIM.format(hook=hook, what=what, args=args, verb=verb, flag=flag, marker=MARKER, python=python)


class HookError(KeyvaultError):
    """A hook cannot be installed: names the file and why."""


def hooks_dir(cwd: str | None = None) -> str:
    code, out, err = gitio.run(["rev-parse", "--git-path", "hooks"], cwd=cwd, check=False)
    if code != 0:
        raise HookError(f"not inside a git repository ({gitio._first_line(err)}); run this in the repository "
                        "whose commits should be checked")
    path = out.decode("utf-8", "surrogateescape").strip()
    return os.path.normpath(os.path.join(cwd or os.getcwd(), path))


def install(hooks: list[str], force: bool = False, cwd: str | None = None,
            python: str | None = None) -> list[tuple[str, str]]:
    """Install the named hooks; [(path, what happened)]. All-or-nothing on refusal: every
    target is checked before anything is written."""
    import sys

    directory = hooks_dir(cwd)
    interpreter = python if python is not None else sys.executable
    plan: list[tuple[str, str, str]] = []
    for hook in hooks:
        path = os.path.join(directory, hook)
        content = shim(hook, interpreter)
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                existing: str | None = fh.read()
        except FileNotFoundError:
            existing = None
        except OSError as exc:
            raise HookError(f"{path}: cannot read the existing hook ({exc.strerror})") from None
        if existing is None:
            plan.append((path, content, "installed"))
        elif MARKER in existing:
            plan.append((path, content, "updated" if existing != content else "already installed"))
        elif force:
            plan.append((path, content, f"installed (the previous hook is kept as {hook}.keyvault-backup)"))
        else:
            framework = "pre-commit" in existing and ("pre_commit" in existing or "pre-commit.com" in existing)
            advice = (" It is the pre-commit framework's hook: add keyvault to .pre-commit-config.yaml "
                      "instead (hook ids keyvault-scan and keyvault-scan-push)." if framework else "")
            raise HookError(f"{path} already exists and is not keyvault's hook; not replacing it.{advice} "
                            "Rerun with --force to replace it (the old hook is kept as "
                            f"{hook}.keyvault-backup).")
    os.makedirs(directory, exist_ok=True)
    done: list[tuple[str, str]] = []
    for path, content, what in plan:
        if what.startswith("installed (the previous"):
            os.replace(path, path + ".keyvault-backup")
        if what != "already installed":
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(content)
            mode = os.stat(tmp).st_mode
            os.chmod(tmp, mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRUSR)
            os.replace(tmp, path)
        done.append((path, what))
    return done
