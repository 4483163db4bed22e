"""The leak gate: find Anthropic credentials in files, staged changes, git history and stdin.

Standard library only (plus keyvault.keys and keyvault.errors): the pre-commit hook imports
this package, so nothing here may be slow to import.

    detect.py    one anchored regex for candidates, exact per-family shapes, filler rejection
    decode.py    bounded decoders: base64 (any alignment), percent, UTF-16, gzip/bzip2/xz, zip
    engine.py    scan_bytes(): one buffer -> hits with line, column and decoder chain
    walk.py      which files a path scan reads (git ls-files, no symlinks out, no FIFOs)
    staged.py    what the next commit adds (one `git diff --cached -U0`)
    history.py   blobs and commit messages of all refs or of a range; who introduced a hit
    pack.py      history straight from pack files: deltas searched, not rebuilt
    config.py    [tool.keyvault.scan] / keyvault.toml, path globs
    baseline.py  accepted credentials by fingerprint and path (no churn)
    report.py    text, JSON, SARIF 2.1.0
    run.py       Options -> scan -> allowlists -> verify -> output -> exit code
    cli.py       the hook's argv parser: `keyvault scan` without importing click
    hooks.py     plain git hook shims and `keyvault hook install`
    api.py       the same scan as a library call

The fast path: `keyvault.cli.main` hands `scan ...` to `cli.py` before click is imported;
anything that parser does not know (--help, typos) goes to the click command in
keyvault/cli/scan.py. Both build a `run.Options` and call `run.execute`.
"""
