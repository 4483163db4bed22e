"""Rendering a scan: text for people, JSON and SARIF 2.1.0 for tools. Only hints and
fingerprints ever appear, never a value."""

from __future__ import annotations

from keyvault.scan.findings import Finding, Report

_RULE_TEXT = {
    "anthropic-api-key": ("Anthropic API key", "An Anthropic API key (sk-ant-api03-...). Anyone holding it can spend the organisation's money."),
    "anthropic-admin-key": ("Anthropic Admin API key", "An Anthropic Admin API key (sk-ant-admin01-...): it manages the organisation's members, workspaces and keys."),
    "anthropic-oauth-token": ("Anthropic OAuth token", "An Anthropic OAuth access or refresh token (sk-ant-oat01-/sk-ant-ort01-), as used by Claude Code and workload identity federation."),
    "anthropic-session-key": ("claude.ai session key", "A claude.ai session key (sk-ant-sid01-): it logs in as the user."),
    "anthropic-unknown-credential": ("Anthropic credential (unrecognised family)", "A string with the shape of an Anthropic credential (sk-ant-<family>-...) from a family this version of keyvault does not know; lower confidence."),
}
_HELP = (
    "Treat the key as compromised: revoke it and deploy a new one (keyvault incident), "
    "then remove it from the file. A key that reached git history stays there until history is "
    "rewritten. If this is an accepted test value, record it with `keyvault baseline update` or "
    "add a `keyvault: allow` comment on the line."
)


def _where(f: Finding) -> str:
    if f.source == "commit-message":
        base = f"commit {f.commit[:12] if f.commit else '?'} message"
    else:
        base = f.path or "-"
    if f.line is not None:
        return f"{base}:{f.line}:{f.column}"
    if f.offset is not None:
        return f"{base}:@{f.offset}"
    return base


def text(report: Report, mode: str, verify: bool) -> str:
    lines: list[str] = []
    for f in report.findings:
        extra = []
        if f.decoded:
            extra.append(f"decoded: {f.decoded}")
        if f.commit and f.source != "commit-message":
            extra.append(f"commit {f.commit[:12]}")
        if verify:
            extra.append({True: "LIVE", False: "not live", None: "liveness unknown"}[f.live])
        tail = f"  ({'; '.join(extra)})" if extra else ""
        lines.append(f"{_where(f)} {f.rule} {f.hint}{tail}")
    s = report.scanned
    what = []
    git_history = mode in ("history", "range", "pre-push", "pre-receive")
    if s.files or not git_history:
        what.append(f"{s.files} file{'s' if s.files != 1 else ''}")
    if s.blobs or git_history:
        what.append(f"{s.blobs} blob{'s' if s.blobs != 1 else ''}")
    if s.commits or git_history:
        what.append(f"{s.commits} commit message{'s' if s.commits != 1 else ''}")
    what.append(_size(s.bytes))
    summary = ", ".join(what)
    suppressed = [f"{n} allowed inline" if k == "allow" else f"{n} in the baseline"
                  for k, n in report.suppressed.items() if n]
    if s.skipped:
        suppressed.append(f"{s.skipped} path{'s' if s.skipped != 1 else ''} excluded by config")
    sup = f"; {', '.join(suppressed)}" if suppressed else ""
    n = len(report.findings)
    if s.nothing_staged:
        lines.append("keyvault scan: nothing is staged, so nothing was scanned (stage changes with git add, "
                     "or scan files with: keyvault scan PATH)")
        return "\n".join(lines) + "\n"
    if n == 0:
        lines.append(f"keyvault scan: no Anthropic credentials found (scanned {summary}{sup})")
        return "\n".join(lines) + "\n"
    lines.append("")
    lines.append(f"keyvault scan: {n} Anthropic credential{'s' if n != 1 else ''} found (scanned {summary}{sup})")
    lines.append("What to do now:")
    lines.append("  1. Treat each key as leaked: deactivate it and rotate every place that uses it:")
    lines.append("       keyvault scan ... --format json > findings.json && keyvault incident --finding findings.json")
    if mode == "staged":
        lines.append("  2. Take it out of the commit: remove it from the file, then git add it again "
                     "(or git restore --staged PATH).")
    elif mode == "pre-push":
        lines.append("  2. It is in commits not pushed yet: take it out of them (git commit --amend, or "
                     "git rebase -i), then push again.")
    elif git_history:
        lines.append("  2. It is in git history: removing the file does not remove it; rewrite history "
                     "(git filter-repo) if the repository is or will be shared.")
    else:
        lines.append("  2. Remove it from the file and load it at run time instead (keyvault get / "
                     "keyvault exec).")
    lines.append("  3. A test value you accept? Record it: keyvault baseline update, or end the line "
                 "with a 'keyvault: allow' comment.")
    return "\n".join(lines) + "\n"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1 << 20:
        return f"{n / 1024:.1f} KiB"
    if n < 1 << 30:
        return f"{n / (1 << 20):.1f} MiB"
    return f"{n / (1 << 30):.2f} GiB"


def as_json(report: Report, verify: bool) -> str:
    import json

    doc = {
        "version": 1,
        "findings": [f.as_json(with_live=verify) for f in report.findings],
        "scanned": report.scanned.as_json(),
    }
    return json.dumps(doc, indent=2) + "\n"


def sarif(report: Report, verify: bool, version: str, base: str = ".") -> str:
    import json

    rule_ids = list(_RULE_TEXT)
    rules = []
    for rid in rule_ids:
        name, full = _RULE_TEXT[rid]
        level = "warning" if rid == "anthropic-unknown-credential" else "error"
        rules.append({
            "id": rid,
            "name": "".join(w.capitalize() for w in rid.split("-")),
            "shortDescription": {"text": name},
            "fullDescription": {"text": full},
            "help": {"text": _HELP, "markdown": _HELP},
            "defaultConfiguration": {"level": level},
            "properties": {"tags": ["security", "secret"], "precision": "very-high" if level == "error" else "medium",
                           "security-severity": "9.0" if level == "error" else "7.0"},
        })
    results = []
    for f in report.findings:
        name = _RULE_TEXT[f.rule][0]
        where = f" in commit {f.commit[:12]}" if f.commit else ""
        decoded = f" (decoded: {f.decoded})" if f.decoded else ""
        result: dict[str, object] = {
            "ruleId": f.rule,
            "ruleIndex": rule_ids.index(f.rule),
            "level": "warning" if f.rule == "anthropic-unknown-credential" else "error",
            "message": {"text": f"{name} {f.hint}{where}{decoded}. {_HELP}"},
            "partialFingerprints": {"credentialFingerprint/v1": f.fingerprint},
            "properties": {"source": f.source, "commit": f.commit, "decoded": f.decoded, "hint": f.hint},
        }
        if verify:
            result["properties"]["live"] = f.live  # type: ignore[index]
        if f.path is not None:
            region: dict[str, int] = {}
            if f.line is not None:
                region["startLine"] = f.line
                if f.column is not None:
                    region["startColumn"] = f.column
            location: dict[str, object] = {
                "artifactLocation": {"uri": _uri(f.path, base if f.source in ("worktree", "staged") else "."),
                                     "uriBaseId": "%SRCROOT%"},
            }
            if region:
                location["region"] = region
            result["locations"] = [{"physicalLocation": location}]
        results.append(result)
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "keyvault", "semanticVersion": version, "version": version,
                                "rules": rules}},
            "results": results,
            "columnKind": "unicodeCodePoints",
        }],
    }
    return json.dumps(doc, indent=2) + "\n"


def _uri(path: str, base: str = ".") -> str:
    import posixpath
    from urllib.parse import quote

    outer = path.split("!", 1)[0]
    if base not in ("", "."):
        outer = posixpath.normpath(posixpath.join(base.replace("\\", "/"), outer.replace("\\", "/")))
    return quote(outer.replace("\\", "/").lstrip("/"), safe="/")
