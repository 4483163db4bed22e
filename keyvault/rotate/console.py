"""The steps a person does in the Claude Console, written out exactly.

The Admin API cannot create keys, and without an Admin key it cannot deactivate them either,
so these texts are part of the product: they must be precise enough to follow at 3 a.m.
"""

from __future__ import annotations

KEYS_PAGE = "https://platform.claude.com/settings/keys"


def create_steps(key_name: str, workspace_id: str | None, stage_hint: str | None = None) -> str:
    where = f"workspace {workspace_id}" if workspace_id else "the same workspace as the current key"
    lines = [
        "Create the new key in the Claude Console (it is shown only once):",
        f"  1. Open {KEYS_PAGE} (Settings -> API keys) and click 'Create key'.",
        f"  2. Name it: {key_name}",
        f"  3. Workspace: {where}. Linked account: the service account the app runs as.",
        "  4. Click 'Create' and copy the key.",
    ]
    if stage_hint:
        lines.append(f"  5. {stage_hint}")
    return "\n".join(lines)


def stage_command(policy_path: str | None, env_name: str) -> str:
    policy = f" --policy {policy_path}" if policy_path else ""
    return (
        f"Hand it to keyvault without putting it in argv or shell history, e.g. "
        f"`keyvault stage{policy} --env {env_name} < keyfile` (then delete keyfile), "
        f"or rerun `keyvault rotate{policy} --env {env_name}` interactively and paste it."
    )


def revoke_steps(hint: str, key_id: str | None, name: str | None) -> str:
    label = f"{name!r} " if name else ""
    ident = f" (id {key_id})" if key_id else ""
    return "\n".join([
        "Deactivate the old key in the Claude Console:",
        f"  1. Open {KEYS_PAGE} (Settings -> API keys).",
        f"  2. Find the key {label}shown as {hint}{ident}.",
        "  3. Open its '...' menu and choose 'Disable' (reversible; 'Delete' is final).",
        "  4. Run the same `keyvault rotate` again: it confirms the old key is refused (401) and finishes.",
    ])
