"""The rotation steps: plan, create, verify-new, update, verify-deploy, grace, revoke, archive,
done. Each one takes the `Run`, does its work so that doing it twice changes nothing the first
time did not, and records the next step in the journal (or returns a Result to stop there).

Crash points (keyvault.rotate.crash): `<step>` when a step begins, `<step>:done` when its work
is done but the journal does not say so yet, and points around every backend and API write.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from keyvault.errors import BackendError, ConflictError, KeyvaultError, RolledBack
from keyvault.keys import API, Secret
from keyvault.rotate import console, crash
from keyvault.rotate.journal import DONE, ROLLED_BACK, ROLLING_BACK, iso, iso_deadline, parse_iso
from keyvault.rotate.newkey import KeyInput, obtain, prompt_hidden
from keyvault.rotate.targets import apply_new, disagreement, read_all, require_writable, roll_back, run_check

if TYPE_CHECKING:
    from keyvault.anthropic_api import ApiKeyInfo
    from keyvault.rotate.engine import Result, Run

REVOKE_CONFIRM_TRIES = 5
REVOKE_CONFIRM_DELAY = 1.0
HEARTBEAT = 30.0


def _timed(run: Run, step: str, target: str | None, hint: str | None, action: Callable[[], str]) -> str:
    started = time.monotonic()
    message = action()
    run.emit(step, message, target, hint, time.monotonic() - started)
    return message


def _sig(run: Run) -> str:
    return hashlib.sha256("\n".join(h.uri for h in run.items).encode()).hexdigest()[:16]


def _key_source_possible(run: Run) -> bool:
    return run.interactive or run.options.new_key is not None


# -- before the journal is claimed -------------------------------------------------------------

def nothing_to_do(run: Run) -> Result | None:
    """A scheduled run with no new key anywhere: say whether the key is due, change nothing."""
    if _key_source_possible(run):
        return None
    pending = run.primary.backend.read_pending()
    if pending is not None:
        return None
    d = run.due_now()
    name = run.policy.key_name(run.env)
    when = iso(d.due_at) if d.due_at else "unknown"
    if d.state == "ok":
        summary = f"not due: the key is due for rotation at {when} ({d.days_left:.0f} days); nothing to do"
        return run.result("not-due", summary, 0)
    run.say(console.create_steps(name, run.env.workspace_id,
                                 console.stage_command(str(run.policy.path) if run.policy.path else None, run.env.name)))
    age = f"{d.age_days:.0f} days old, " if d.age_days is not None else ""
    summary = (f"rotation due ({age}due {when}, {d.reason}) but no new key is staged: create one in the "
               "Console and stage it (steps above)")
    return run.result("due", summary, 1)


def dry_run(run: Run) -> Result:
    state = run.journal.load()
    versions = read_all(run.items)
    for h, v in zip(run.items, versions):
        run.emit("plan", f"holds version {v.version}", h.uri, v.secret.hint)
    if state and state.get("phase") not in (DONE, ROLLED_BACK, "aborted"):
        summary = (f"dry run: rotation {state.get('rotation')} would resume at step {state.get('step')} "
                   f"({state.get('note') or state.get('phase')})")
        return run.result("dry-run", summary)
    problem = disagreement(run.items, versions)
    if problem:
        raise KeyvaultError(problem)
    pending = run.primary.backend.read_pending()
    if run.keys.admin is None:
        run.emit("plan", f"no Admin key ({run.keys.admin_note}): the old key would be revoked by hand in the Console")
    new = f"the staged key {pending.secret.hint}" if pending else "a new key (stdin, --new-key-fd, --new-key-command or a prompt)"
    summary = (f"dry run: would rotate {len(run.items)} target(s) of {run.env.name} from "
               f"{versions[0].secret.hint} to {new}; nothing was changed")
    return run.result("dry-run", summary)


# -- the steps ------------------------------------------------------------------------------

def plan(run: Run) -> Result | None:
    started = time.monotonic()
    require_writable(run.items)
    versions = read_all(run.items)
    for h, v in zip(run.items, versions):
        run.emit("plan", f"holds version {v.version}", h.uri, v.secret.hint)
    problem = disagreement(run.items, versions)
    if problem:
        raise run.abort("targets-disagree", problem)
    old = versions[0].secret
    if old.family is not API:
        raise run.abort("not-an-api-key", f"{run.primary.uri} holds {old.family.label} ({old.hint}); rotation handles API keys (sk-ant-api03-...)")
    if run.options.expect_old and old.fingerprint != run.options.expect_old:
        raise run.abort("not-the-leaked-key", f"{run.env.name}: its targets hold {old.hint}, not the leaked key")
    run.old = old
    info = run.keys.find(old, run.env.workspace_id) if run.keys.admin else None
    if run.keys.admin is None:
        run.emit("plan", f"no Admin key ({run.keys.admin_note}): revoking the old key will be a Console step")
    elif info is None:
        run.emit("plan", "the Admin API lists no key with this hint: revoking it will be a Console step", hint=old.hint)
    else:
        run.emit("plan", f"old key is {info.id} ({info.status})", hint=old.hint)
    crash.point("plan:done")
    run.journal.save(
        step="create", old_fp=old.fingerprint, old_hint=old.hint, old_version=str(versions[0].version),
        old_id=info.id if info else None, old_ws=info.workspace_id if info else None, targets_sig=_sig(run),
        note=None,
    )
    run.emit("plan", f"{len(run.items)} target(s) agree", seconds=time.monotonic() - started)
    return None


def create(run: Run) -> Result | None:
    pending_version = run.primary.backend.read_pending()
    pending = pending_version.secret if pending_version else None
    spec = run.options.key_input
    supplied = run.options.new_key or obtain(KeyInput(fd=spec.fd, command=spec.command, stdin=spec.stdin and not run.interactive))
    if pending is not None and supplied is not None and pending.fingerprint != supplied.fingerprint:
        raise run.abort(
            "pending-differs",
            f"{run.primary.uri} already holds a staged key {pending.hint} and this run was given "
            f"{supplied.hint}; rotate with the staged key (omit the new key), or replace it with "
            "`keyvault stage --replace`",
        )
    new = pending or supplied
    origin = "the pending slot" if pending is not None else "input"
    if new is None and run.interactive:
        name = run.policy.key_name(run.env)
        run.say(console.create_steps(name, run.env.workspace_id or run.state.get("old_ws"),
                                     "Paste it at the prompt below; the terminal does not show it."))
        new = prompt_hidden()
        origin = "the prompt"
    if new is None:
        d = run.due_now()
        code = 0 if d.state == "ok" else 1
        run.journal.release("aborted", note="no-new-key")
        run.say(console.create_steps(run.policy.key_name(run.env), run.env.workspace_id,
                                     console.stage_command(str(run.policy.path) if run.policy.path else None, run.env.name)))
        return run.result("due" if code else "not-due", "no new key was given or staged: nothing was changed", code)
    if new.family is not API:
        raise run.abort("new-not-api", f"the new key is {new.family.label} ({new.hint}); an API key (sk-ant-api03-...) is expected")
    if new.fingerprint == run.state.get("old_fp"):
        raise run.abort("new-is-old", f"the new key {new.hint} is the key the targets already hold; create a new one in the Console")
    if pending is None or pending.fingerprint != new.fingerprint:
        # The Console showed this key once: keep it durably before anything can fail.
        crash.point("create:stash")
        _timed(run, "create", run.primary.uri, new.hint, lambda: (run.primary.backend.stage(new), "stashed in the pending slot")[1])
        crash.point("create:stashed")
    else:
        run.emit("create", f"new key from {origin}", run.primary.uri, new.hint)
    run.new = new
    crash.point("create:done")
    run.journal.save(step="verify-new", new_fp=new.fingerprint, new_hint=new.hint, stashed_at=iso(run.now()))
    return None


def verify_new(run: Run) -> Result | None:
    new = run.recover_new()
    started = time.monotonic()
    status = run.keys.verify(new, "new key")
    run.emit("verify-new", f"API says {status.state}", hint=new.hint, seconds=time.monotonic() - started)
    if status.state == "invalid":
        _drop_pending(run, new)
        raise run.abort(
            "new-key-refused",
            f"the API refuses the new key {new.hint} ({status.summary()}): it is revoked, expired or "
            "mistyped; it was removed from the pending slot and nothing else was changed",
        )
    if status.state in ("forbidden", "billing"):
        raise run.abort("new-key-unusable", f"the new key {new.hint} cannot call the API ({status.summary()}); nothing was changed")
    if status.state == "unfunded":
        run.emit("verify-new", "warning: the organization has no credit; the key is valid", hint=new.hint)
    new_id = None
    if run.keys.admin is not None:
        info = run.keys.find(new, None)
        if info is None:
            raise run.abort("new-key-unknown", f"the Admin API lists no key with the hint {new.hint}: the new key belongs to another organization")
        expected = run.env.workspace_id or run.state.get("old_ws")
        if expected and info.workspace_id != expected:
            raise run.abort(
                "wrong-workspace",
                f"the new key {new.hint} ({info.id}) is in {info.workspace_id or 'the organization scope'}, "
                f"expected workspace {expected}; it stays in the pending slot: deactivate it in the Console "
                "and clear it with `keyvault stage --clear`",
            )
        if info.status != "active":
            raise run.abort("new-key-not-active", f"the new key {new.hint} ({info.id}) is {info.status}")
        new_id = info.id
        run.emit("verify-new", f"new key is {info.id} in {info.workspace_id or 'organization scope'}", hint=new.hint)
    crash.point("verify-new:done")
    run.journal.save(step="update", new_id=new_id)
    return None


def _drop_pending(run: Run, new: Secret) -> None:
    pending = run.primary.backend.read_pending()
    if pending is not None and pending.secret.fingerprint == new.fingerprint:
        run.primary.backend.clear_pending()


def update(run: Run) -> Result | None:
    new = run.recover_new()
    old_fp = run.state["old_fp"]
    if run.state.get("targets_sig") and run.state["targets_sig"] != _sig(run):
        return start_rollback(run, "policy-changed", "the policy's targets changed during the rotation")
    for h in run.items:
        try:
            _timed(run, "update", h.uri, new.hint, lambda h=h: _describe_apply(apply_new(h, old_fp, new)))
        except ConflictError as exc:
            return start_rollback(run, f"conflict-at-{h.index}", str(exc))
        except BackendError as exc:
            # Leave no target on a different key than the others at rest: undo, keep the new key.
            return start_rollback(run, f"write-failed-at-{h.index}", str(exc))
        run.journal.save(updated=str(h.index))
    crash.point("update:done")
    run.journal.save(step="verify-deploy", new_version=str(run.primary.read().version))
    return None


def _describe_apply(outcome: tuple[str, object]) -> str:
    what, version = outcome
    return f"{what} (version {getattr(version, 'version', '?')})"


def verify_deploy(run: Run) -> Result | None:
    new = run.recover_new()
    served: dict[int, Secret] = {}
    from keyvault.resolve import get_api_key

    for h in run.items:
        started = time.monotonic()
        try:
            current = h.read()
            # What an app resolving this target gets now (ttl 0: no cached copy).
            resolved = get_api_key(h.uri, ttl=0)
        except KeyvaultError as exc:
            return start_rollback(run, f"readback-{h.index}", f"{h.uri}: {exc}")
        for got in (current.secret, resolved):
            if got.fingerprint != new.fingerprint:
                return start_rollback(run, f"readback-{h.index}", f"{h.uri} reads back {got.hint}, not the new key {new.hint}")
        served[h.index] = resolved
        run.emit("verify-deploy", "reads back the new key", h.uri, new.hint, time.monotonic() - started)
    for h in run.items:
        if not h.target.check:
            continue
        run.journal.save()  # renew the lease before a possibly long check
        crash.point(f"verify-deploy:check:{h.index}")
        result = run_check(h, served[h.index])
        run.emit("verify-deploy", result.detail, h.uri, new.hint, result.seconds)
        if not result.ok:
            return start_rollback(run, f"check-failed-{h.index}", f"{h.uri}: {result.detail}")
    crash.point("verify-deploy:done")
    now = run.now()
    grace = timedelta(0) if run.options.incident else run.policy.grace
    run.journal.save(step="grace", deployed_at=iso(now), revoke_after=iso_deadline(now, grace))
    return None


def start_rollback(run: Run, code: str, reason: str) -> Result:
    run.emit("rollback", f"stopping: {reason}")
    run.journal.save(phase=ROLLING_BACK, note=code)
    run.say(f"rolling back: {reason}")
    return finish_rollback(run, code, reason)


def finish_rollback(run: Run, code: str, reason: str | None = None) -> Result:
    """Put every target back on the old key (still active), newest first, the primary last,
    and keep the new key in the primary's pending slot so it is not lost."""
    state = run.state
    old_fp, new_fp = state["old_fp"], state["new_fp"]
    new: Secret | None
    try:
        new = run.recover_new()
    except KeyvaultError:
        new = None
    problems: list[str] = []
    failures: list[str] = []
    for h in reversed(run.items):
        if h is run.primary and new is not None:
            _keep_new_pending(run, new)
        try:
            _timed(run, "rollback", h.uri, state.get("old_hint"), lambda h=h: roll_back(h, old_fp, new_fp))
        except ConflictError as exc:
            problems.append(str(exc))  # a third key: retrying cannot fix it, a person must
        except KeyvaultError as exc:
            failures.append(f"{h.uri}: {exc}")
    if failures:
        # Stay in rolling-back: the next run retries the targets that did not go back.
        raise KeyvaultError(
            "rollback incomplete (" + (reason or code) + "); these targets still serve the new key "
            f"{state.get('new_hint')} (active, so nothing is broken): " + "; ".join(failures)
            + "; run again to finish the rollback"
        )
    if new is not None:
        pending = run.primary.backend.read_pending()
        if pending is None or pending.secret.fingerprint != new.fingerprint:
            run.primary.backend.stage(new)
    crash.point("rollback:all")
    run.journal.release(ROLLED_BACK, note=code, rolled_back_at=iso(run.now()))
    kept = (f"; the new key {new.hint} is kept in the pending slot of {run.primary.uri} (still active in the Console)"
            if new is not None else "")
    text = f"rotation rolled back ({reason or code}): every target holds the old key {state.get('old_hint')} again{kept}"
    if problems:
        text += "; but: " + "; ".join(problems)
    raise RolledBack(text)


def _keep_new_pending(run: Run, new: Secret) -> None:
    """Before the primary leaves the new key, stage it, so no crash can lose it."""
    try:
        current = run.primary.read()
        pending = run.primary.backend.read_pending()
        if current.secret.fingerprint == new.fingerprint and (pending is None or pending.secret.fingerprint != new.fingerprint):
            run.primary.backend.stage(new)
    except KeyvaultError:
        pass  # staged again after the rollback instead


def grace(run: Run) -> Result | None:
    revoke_after = parse_iso(run.state.get("revoke_after")) or run.now()
    wait = run.options.wait if run.options.wait is not None else run.interactive
    while True:
        remaining = (revoke_after - run.now()).total_seconds()
        if remaining <= 0:
            break
        if not wait:
            when = iso(revoke_after)
            run.emit("grace", f"old key stays active until {when}")
            return run.park("awaiting-revoke", f"awaiting revoke at {when}: every target holds the new key; "
                            "run again after that time to revoke the old key", when)
        run.emit("grace", f"waiting {remaining:.0f}s before revoking the old key")
        time.sleep(min(remaining, HEARTBEAT))
        run.journal.save()
    crash.point("grace:done")
    run.journal.save(step="revoke")
    return None


def revoke(run: Run) -> Result | None:
    state = run.state
    new_fp = state["new_fp"]
    served: set[str] = set()
    for h in run.items:
        current = h.read()
        if current.secret.fingerprint != new_fp:
            raise KeyvaultError(
                f"{h.uri} holds {current.secret.hint}, not the new key {state.get('new_hint')}: the old "
                "key stays active; put the new key back (or roll back) and run again"
            )
        served.add(current.secret.hint)
    old = run.recover_old()
    old_hint = state["old_hint"]
    if run.keys.admin is not None:
        old_id = state.get("old_id")
        if not old_id:
            info = run.keys.find(old, None) if old is not None else run.keys.find_by_hint(old_hint, state.get("old_ws"))
            old_id = info.id if info else None
        if old_id:
            return _revoke_by_api(run, old_id, old, served)
        run.emit("revoke", "the Admin API lists no key with this hint", hint=old_hint)
    return _revoke_by_hand(run, old)


def _revoke_by_api(run: Run, old_id: str, old: Secret | None, served: set[str]) -> Result | None:
    state = run.state
    started = time.monotonic()
    info = run.keys.get(old_id)
    _require_replaced_key(run, info, old, served, "deactivate")
    if info.status == "active":
        crash.point("revoke:deactivate")
        info = run.keys.set_status(old_id, "inactive")
        crash.point("revoke:deactivated")
        run.emit("revoke", f"{old_id} set inactive", hint=state["old_hint"], seconds=time.monotonic() - started)
    else:
        run.emit("revoke", f"{old_id} is already {info.status}", hint=state["old_hint"])
    if old is not None:
        _confirm_refused(run, old)
    else:
        run.emit("revoke", "old key value no longer readable: confirmed by the Admin API status only", hint=state["old_hint"])
    crash.point("revoke:done")
    now = run.now()
    run.journal.save(step="archive", old_id=old_id, revoked_at=iso(now),
                     archive_after=iso_deadline(now, run.policy.archive_delay), note=None)
    return None


def _require_replaced_key(run: Run, info: ApiKeyInfo, old: Secret | None, served: set[str], action: str) -> None:
    """Refuse to change the status of a key the rotation did not replace.

    The journal lives in the secret's metadata (tags, labels, a state file), writable by more
    people than the Admin key is; its `old_id` alone must not pick which key gets deactivated.
    The Admin API's own `partial_key_hint` for that id must be the replaced key's hint (from its
    value when a target still has it, else the journal's), and never that of a key the targets
    serve (read from the targets, not the journal).
    """
    expected = old.hint if old is not None else run.state["old_hint"]
    got = info.partial_key_hint
    if got is not None and got in served:
        problem = f"is {got}, the key the targets serve now"
    elif got != expected:
        problem = f"is {got or 'a key without a hint'}, not the replaced key {expected}"
    else:
        return
    raise KeyvaultError(
        f"refusing to {action} {info.id}: the Admin API says this key {problem}. The rotation journal "
        f"on {run.primary.uri} was edited or the key ids changed; nothing was changed. Check the "
        f"journal's old_id, or {action} the old key {expected} in the Console and clear the rotation"
    )


def _confirm_refused(run: Run, old: Secret) -> None:
    for attempt in range(REVOKE_CONFIRM_TRIES):
        status = run.keys.verify(old, "old key")
        if status.live is False:
            run.emit("revoke", f"old key now refused ({status.http_status})", hint=old.hint)
            return
        if attempt + 1 < REVOKE_CONFIRM_TRIES:
            time.sleep(REVOKE_CONFIRM_DELAY)
    raise KeyvaultError(
        f"the old key {old.hint} is inactive in the Admin API but the API still accepts it; "
        "run again in a minute to recheck"
    )


def _revoke_by_hand(run: Run, old: Secret | None) -> Result | None:
    state = run.state
    if old is not None:
        status = run.keys.verify(old, "old key")
        if status.live is False:
            run.emit("revoke", f"old key refused ({status.http_status}): revoked in the Console", hint=old.hint)
            return _revoked_by_hand(run)
    run.say(console.revoke_steps(state["old_hint"], state.get("old_id"), None))
    if run.interactive and run.options.confirm is not None:
        for _ in range(3):
            if not run.options.confirm("Has the old key been disabled in the Console?"):
                break
            if old is None:
                return _revoked_by_hand(run)
            status = run.keys.verify(old, "old key")
            if status.live is False:
                run.emit("revoke", f"old key refused ({status.http_status})", hint=old.hint)
                return _revoked_by_hand(run)
            run.say(f"the API still accepts {old.hint}; the Console may take a moment")
    if old is None:
        summary = ("awaiting manual revoke: disable the old key in the Console (steps above), then run "
                   "this command again interactively to confirm (its value is no longer readable here)")
    else:
        summary = "awaiting manual revoke: disable the old key in the Console (steps above); the next run confirms the 401"
    return run.park("awaiting-manual-revoke", summary)


def _revoked_by_hand(run: Run) -> Result | None:
    crash.point("revoke:done")
    now = run.now()
    run.journal.save(step="archive", revoked_at=iso(now), archive_after=iso_deadline(now, run.policy.archive_delay), note=None)
    return None


def archive(run: Run) -> Result | None:
    state = run.state
    old_id = state.get("old_id")
    if run.keys.admin is None or not old_id:
        run.emit("archive", "archiving is left to the Console (optional: the key is already refused)", hint=state["old_hint"])
        run.journal.save(step="done", note="archive-by-hand")
        return None
    archive_after = parse_iso(state.get("archive_after")) or run.now()
    if run.now() < archive_after:
        when = iso(archive_after)
        run.emit("archive", f"old key {old_id} is inactive; archive at {when}", hint=state["old_hint"])
        return run.park("awaiting-archive", f"old key revoked; awaiting archive at {when} (run again after that time)", when)
    started = time.monotonic()
    info = run.keys.get(old_id)
    old = run.old if run.old is not None and run.old.fingerprint == state.get("old_fp") else None
    _require_replaced_key(run, info, old, set(), "archive")
    if info.status == "active":
        # The revoke step left it inactive: active now means a person turned it back on (an
        # app still needs it) or old_id names another key. Archiving is final: ask a person.
        raise KeyvaultError(
            f"refusing to archive {old_id} ({info.partial_key_hint}): it is active again since the revoke step; "
            "archiving is final. Deactivate it in the Console if nothing needs it, then run again"
        )
    if info.status != "archived":
        crash.point("archive:set")
        run.keys.set_status(old_id, "archived")
    run.emit("archive", f"{old_id} archived", hint=state["old_hint"], seconds=time.monotonic() - started)
    crash.point("archive:done")
    run.journal.save(step="done", archived_at=iso(run.now()))
    return None


def done(run: Run) -> Result:
    state = run.state
    new_fp = state["new_fp"]
    pending = run.primary.backend.read_pending()
    if pending is not None and pending.secret.fingerprint == new_fp:
        run.primary.backend.clear_pending()  # a leftover copy of the key every target now serves
    run.journal.release(DONE, finished_at=iso(run.now()))
    summary = f"done: every target holds {state.get('new_hint')}; the old key {state.get('old_hint')} is revoked"
    run.emit("done", summary)
    return run.result(DONE, summary)


STEPS: dict[str, Callable[[Run], Result | None]] = {
    "plan": plan,
    "create": create,
    "verify-new": verify_new,
    "update": update,
    "verify-deploy": verify_deploy,
    "grace": grace,
    "revoke": revoke,
    "archive": archive,
    "done": done,
}

