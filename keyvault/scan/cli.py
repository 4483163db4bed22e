"""The fast path for `keyvault scan`: a plain argv parser, so the pre-commit hook never imports
click (~30 ms, more than the scan of a typical commit).

`keyvault.cli.main` hands `scan ...` to `main()` here before it imports click. Anything this
parser does not recognise (`--help`, a typo, a new option) returns None, and the click command
handles it, so usage errors and help read the same either way. Both build a `run.Options`
and call `run.execute`, so results are identical.
"""

from __future__ import annotations

import sys

from keyvault.scan.run import Options

_FLAGS = {
    "--staged": "staged", "--history": "history", "--stdin": "stdin", "--pre-push": "pre_push",
    "--pre-receive": "pre_receive", "--no-baseline": "no_baseline", "--no-gitignore": "no_gitignore",
}
_VALUES = {"--range", "--format", "-f", "--output", "-o", "--known", "--baseline", "--config", "--exclude",
           "--jobs", "-j"}


def parse(argv: list[str]) -> Options | None:
    """Options for `keyvault scan ARGV`, or None when click should parse it instead."""
    opts = Options()
    i = 0
    rest_are_paths = False
    while i < len(argv):
        arg = argv[i]
        i += 1
        if rest_are_paths or not arg.startswith("-") or arg == "-":
            opts.paths.append(arg)
            continue
        if arg == "--":
            rest_are_paths = True
            continue
        if arg in _FLAGS:
            setattr(opts, _FLAGS[arg], True)
            continue
        if arg == "--verify":
            opts.verify = True
            continue
        if arg == "--no-verify":
            opts.verify = False
            continue
        name, eq, value = arg.partition("=")
        if name not in _VALUES:
            return None
        if not eq:
            if i >= len(argv):
                return None
            value = argv[i]
            i += 1
        if name == "--range":
            opts.range = value
        elif name in ("--format", "-f"):
            if value not in ("text", "json", "sarif"):
                return None
            opts.format = value
        elif name in ("--output", "-o"):
            opts.output = value
        elif name == "--known":
            opts.known.append(value)
        elif name == "--baseline":
            opts.baseline = value
        elif name == "--config":
            opts.config = value
        elif name == "--exclude":
            opts.exclude.append(value)
        elif name in ("--jobs", "-j"):
            try:
                opts.jobs = int(value)
            except ValueError:
                return None
    return opts


def main(argv: list[str]) -> int | None:
    """Run `keyvault scan ARGV`; None means: not handled here, ask click."""
    opts = parse(argv)
    if opts is None:
        return None
    from keyvault.scan.run import execute

    return execute(opts)


def console(argv: list[str] | None = None) -> None:
    """Entry point of `keyvault-scan` (what the hooks run): `keyvault scan` without the
    dispatcher."""
    from keyvault.cli import main as cli_main

    cli_main(["scan", *(sys.argv[1:] if argv is None else argv)])
