"""The leak gate: find Anthropic credentials in files, staged changes, git history and stdin.

Standard library only (plus keyvault.keys and keyvault.errors): this package is what the
pre-commit hook imports, so nothing here may be slow to import.

    from keyvault.scan.engine import scan_bytes      # one buffer -> hits
    from keyvault.scan.run import Options, execute   # a whole scan, as the CLI runs it
"""
