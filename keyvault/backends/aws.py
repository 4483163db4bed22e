"""AWS Secrets Manager: `aws-sm://NAME?region=R&profile=P&endpoint=URL#field`.

NAME is the secret's name or ARN; `#field` names a key inside a JSON secret (without it the
secret string is the key). Credentials, region and endpoint come from the standard AWS chain
(`AWS_PROFILE`, `AWS_REGION`, `AWS_ENDPOINT_URL`, instance roles...) unless the URI names them.

How rotation maps onto Secrets Manager's own mechanism:

- current = the version labelled AWSCURRENT, always read with an explicit `VersionStage` (moto
  serves a stale version to a plain GetSecretValue after a label move; on AWS it is the same);
- stage = PutSecretValue with `VersionStages=["AWSPENDING"]` and a ClientRequestToken derived
  from the new secret string, so a retried stage never makes a second version;
- promote = UpdateSecretVersionStage(AWSCURRENT, MoveToVersionId=pending,
  RemoveFromVersionId=<the version read>) after checking the current key's fingerprint: AWS
  refuses the move if AWSCURRENT has left that version, which makes the move a compare-and-swap.
  AWS then labels the old version AWSPREVIOUS itself; finally AWSPENDING is removed;
- rollback = the same move towards AWSPREVIOUS;
- rotation state = JSON in the sibling secret `NAME/keyvault-state`; its AWSCURRENT VersionId is
  the token, and moving AWSCURRENT with RemoveFromVersionId=<token> is the compare-and-swap
  (tags cannot do this: they have no condition).

boto3 is imported on first use, never by `import keyvault`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timezone
from typing import Any

from keyvault.backends import Source, Version, VersionInfo, check_params
from keyvault.backends import _fields
from keyvault.backends.localfs import check_state
from keyvault.errors import (
    BackendError,
    ConflictError,
    KeyvaultError,
    NotFoundError,
    PermissionDeniedError,
    SourceError,
)
from keyvault.keys import Secret, fingerprint

CURRENT, PENDING, PREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"
# private labels for the two-step writes (put under a label, then move AWSCURRENT with CAS)
STATE_NEXT, ROLLBACK_NEXT = "KEYVAULT_STATE_NEXT", "KEYVAULT_ROLLBACK"
STATE_SUFFIX = "/keyvault-state"
_STAGE_NAMES = {CURRENT: "current", PENDING: "pending", PREVIOUS: "previous"}
_PARAMS = {"region", "profile", "endpoint"}
_DENIED = {"AccessDeniedException", "AccessDenied", "403"}
_BAD_CREDENTIALS = {
    "UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException",
    "ExpiredTokenException", "ExpiredToken", "SignatureDoesNotMatch", "IncompleteSignature",
}
_THROTTLED = {"ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded", "LimitExceededException"}


def request_token(secret_string: str, salt: str = "") -> str:
    """A ClientRequestToken (UUID form, >= 32 chars) fixed by the content: retries reuse it."""
    digest = hashlib.sha256(f"keyvault:{salt}:{fingerprint(secret_string)}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return None


def _state_name(name: str) -> str:
    if name.startswith("arn:"):
        # arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf -> NAME
        resource = name.split(":", 6)[-1]
        base, dash, suffix = resource.rpartition("-")
        name = base if dash and len(suffix) == 6 else resource
    return name + STATE_SUFFIX


class AwsSecretsManagerBackend:
    writable = True

    def __init__(self, source: Source) -> None:
        self.source = source
        check_params(source, _PARAMS)
        self.name = source.location
        if not self.name:
            raise SourceError(f"source {source}: no secret name; expected aws-sm://NAME[#field]")
        self.field = source.field
        self.region = source.params.get("region") or None
        if self.region is None and self.name.startswith("arn:"):
            parts = self.name.split(":")
            self.region = parts[3] if len(parts) > 3 and parts[3] else None
        self.profile = source.params.get("profile") or None
        self.endpoint = source.params.get("endpoint") or None
        self.state_name = _state_name(self.name)
        self._client: Any = None

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        try:
            import boto3
            from botocore.config import Config
            from botocore.exceptions import NoRegionError, ProfileNotFound
        except ImportError:
            raise SourceError(
                f"source {self.source}: boto3 is not installed; pip install 'keyvault-anthropic[aws]'"
            ) from None
        try:
            session = boto3.session.Session(profile_name=self.profile, region_name=self.region)
            return session.client(
                "secretsmanager",
                endpoint_url=self.endpoint,
                config=Config(retries={"mode": "standard"}, connect_timeout=5, read_timeout=15),
            )
        except ProfileNotFound:
            raise SourceError(
                f"source {self.source}: AWS profile {self.profile!r} is not in ~/.aws/config or ~/.aws/credentials"
            ) from None
        except NoRegionError:
            raise SourceError(
                f"source {self.source}: no AWS region; add ?region=us-east-1 to the source or set AWS_REGION"
            ) from None
        except ValueError as exc:  # malformed endpoint URL
            raise SourceError(f"source {self.source}: {exc}") from None

    def _where(self, name: str | None = None) -> str:
        name = name or self.name
        region = self.region or getattr(getattr(self._client, "meta", None), "region_name", None)
        return f"{self.source} (AWS Secrets Manager secret {name!r}" + (f" in {region})" if region else ")")

    def _call(self, operation: str, name: str | None = None, **kwargs: Any) -> Any:
        """Call the API; translate every failure into a keyvault error that names the fix."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as exc:
            raise self._translate(exc, operation, name) from None
        except KeyvaultError:
            raise
        except BotoCoreError as exc:
            raise self._translate_core(exc, name) from None

    def _translate(self, exc: Any, operation: str, name: str | None) -> KeyvaultError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code.isdigit():  # moto puts the HTTP status here and the real code in an XML message
            import re

            inner = re.search(r"<Code>([A-Za-z]+)</Code>", str(error.get("Message", "")))
            code = inner.group(1) if inner else code
        where = self._where(name)
        action = "secretsmanager:" + "".join(p.capitalize() for p in operation.split("_"))
        if code == "ResourceNotFoundException":
            return NotFoundError(
                f"{where}: not found; check the name and region (or create it: "
                f"aws secretsmanager create-secret --name {name or self.name})"
            )
        if code in _DENIED:
            return PermissionDeniedError(
                f"{where}: access denied for {action}; grant it to this identity "
                "(policies/aws/reader.json to read, policies/aws/rotator.json to rotate)"
            )
        if code in _BAD_CREDENTIALS:
            return PermissionDeniedError(
                f"{where}: AWS rejected the credentials ({code}); refresh them (aws sso login, "
                "AWS_PROFILE) or check the clock"
            )
        if code == "DecryptionFailure":
            return PermissionDeniedError(
                f"{where}: Secrets Manager cannot decrypt the secret with its KMS key; grant this "
                "identity kms:Decrypt on that key (with kms:ViaService = secretsmanager.<region>.amazonaws.com)"
            )
        if code in _THROTTLED:
            return BackendError(
                f"{where}: throttled by AWS ({code}) after retries; call less often (cache the key) "
                "or raise AWS_MAX_ATTEMPTS"
            )
        if code == "InvalidRequestException" and "deleted" in str(error.get("Message", "")).lower():
            return NotFoundError(
                f"{where}: the secret is scheduled for deletion; restore it with "
                f"aws secretsmanager restore-secret --secret-id {name or self.name}"
            )
        message = str(error.get("Message", "")).splitlines()[0][:300] if error.get("Message") else ""
        failed = BackendError(f"{where}: {action} failed: {code}" + (f": {message}" if message else ""))
        failed.aws_code = code  # type: ignore[attr-defined]
        return failed

    def _translate_core(self, exc: Any, name: str | None) -> KeyvaultError:
        from botocore.exceptions import EndpointConnectionError, NoCredentialsError, NoRegionError

        where = self._where(name)
        if isinstance(exc, NoCredentialsError):
            return PermissionDeniedError(
                f"{where}: no AWS credentials found; set AWS_PROFILE, run aws sso login, or attach a role"
            )
        if isinstance(exc, NoRegionError):
            return SourceError(f"{where}: no AWS region; add ?region= to the source or set AWS_REGION")
        if isinstance(exc, EndpointConnectionError):
            return BackendError(f"{where}: cannot reach {exc.kwargs.get('endpoint_url', 'the endpoint')}")
        return BackendError(f"{where}: {type(exc).__name__}: {exc}")

    def _get(self, name: str | None = None, *, stage: str | None = None, version_id: str | None = None) -> Any:
        kwargs: dict[str, Any] = {"SecretId": name or self.name}
        if stage:
            kwargs["VersionStage"] = stage
        if version_id:
            kwargs["VersionId"] = version_id
        return self._call("get_secret_value", name, **kwargs)

    def _text(self, response: Any) -> str:
        if "SecretString" in response:
            return str(response["SecretString"])
        raw = response.get("SecretBinary")
        if raw is None:
            raise BackendError(f"{self._where()}: version {response.get('VersionId')} has no value")
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise BackendError(f"{self._where()}: the secret is binary, not UTF-8 text") from None

    def _version(self, response: Any, stage: str) -> Version:
        value = _fields.extract(self._text(response), self.field, str(self.source))
        return Version(Secret(value), str(response["VersionId"]), _utc(response.get("CreatedDate")), stage)

    def _labels(self, name: str | None = None) -> dict[str, str]:
        """label -> VersionId for every labelled version."""
        described = self._call("describe_secret", name, SecretId=name or self.name)
        labels: dict[str, str] = {}
        for version_id, stages in (described.get("VersionIdsToStages") or {}).items():
            for stage in stages:
                labels[stage] = version_id
        return labels

    def _move(self, label: str, to: str | None, away_from: str | None, name: str | None = None) -> None:
        kwargs: dict[str, Any] = {"SecretId": name or self.name, "VersionStage": label}
        if to:
            kwargs["MoveToVersionId"] = to
        if away_from:
            kwargs["RemoveFromVersionId"] = away_from
        self._call("update_secret_version_stage", name, **kwargs)

    def _put_labelled(self, text: str, label: str, labels: dict[str, str], salt: str = "") -> str:
        """Put `text` as a version carrying `label` (idempotent) and return its VersionId."""
        token = request_token(text, salt)
        if labels.get(label) == token:
            return token
        response = self._call(
            "put_secret_value", None, SecretId=self.name, SecretString=text,
            ClientRequestToken=token, VersionStages=[label],
        )
        version_id = str(response["VersionId"])
        if label not in (response.get("VersionStages") or []):
            # the version existed already (same content): AWS ignores the labels then
            self._move(label, version_id, labels.get(label) if labels.get(label) != version_id else None)
        return version_id

    # -- the protocol -----------------------------------------------------------------------

    def read(self) -> Version:
        return self._version(self._get(stage=CURRENT), "current")

    def read_pending(self) -> Version | None:
        pending = self._labels().get(PENDING)
        if pending is None:
            return None
        return self._version(self._get(version_id=pending, stage=PENDING), "pending")

    def read_previous(self) -> Version | None:
        """The version labelled AWSPREVIOUS (what rollback restores), or None."""
        previous = self._labels().get(PREVIOUS)
        if previous is None:
            return None
        return self._version(self._get(version_id=previous, stage=PREVIOUS), "previous")

    def stage(self, secret: Secret) -> Version:
        labels = self._labels()
        if PENDING in labels:
            pending = self._version(self._get(version_id=labels[PENDING], stage=PENDING), "pending")
            if pending.secret == secret:
                return pending
            raise ConflictError(
                f"{self._where()}: another key ({pending.secret.hint}) is already staged; promote it, or "
                "clear it first if it is abandoned (it may be the only copy of a key shown once)"
            )
        current_text = self._text(self._get(version_id=labels.get(CURRENT), stage=CURRENT))
        text = _fields.compose(current_text, self.field, secret.reveal(), str(self.source))
        version_id = self._put_labelled(text, PENDING, labels)
        return self._version(self._get(version_id=version_id, stage=PENDING), "pending")

    def clear_pending(self) -> None:
        pending = self._labels().get(PENDING)
        if pending is not None:
            self._move(PENDING, None, pending)

    def promote(self, expected_current: str) -> Version:
        labels = self._labels()
        current_id, pending_id = labels.get(CURRENT), labels.get(PENDING)
        if pending_id is None:
            raise NotFoundError(f"{self._where()}: no pending key (AWSPENDING) to promote; stage one first")
        current = self._get(version_id=current_id, stage=CURRENT)
        if pending_id == current_id:  # an earlier promote moved AWSCURRENT, then stopped
            self._move(PENDING, None, pending_id)
            return self._version(current, "current")
        self._check(current, expected_current, "promote")
        pending = self._get(version_id=pending_id, stage=PENDING)
        current_text, pending_text = self._text(current), self._text(pending)
        if _fields.others(current_text, self.field) != _fields.others(pending_text, self.field):
            # another field changed since staging: re-stage on top of it rather than revert it
            value = _fields.extract(pending_text, self.field, str(self.source))
            merged = _fields.compose(current_text, self.field, value, str(self.source))
            pending_id = self._put_labelled(merged, PENDING, labels)
        self._swap(pending_id, current_id, "promote")
        self._move(PENDING, None, pending_id)
        return self._version(self._get(version_id=pending_id, stage=CURRENT), "current")

    def rollback(self, expected_current: str) -> Version:
        labels = self._labels()
        current_id, previous_id = labels.get(CURRENT), labels.get(PREVIOUS)
        if previous_id is None:
            raise NotFoundError(f"{self._where()}: no previous version (AWSPREVIOUS) to roll back to")
        current = self._get(version_id=current_id, stage=CURRENT)
        self._check(current, expected_current, "roll back")
        previous_text = self._text(self._get(version_id=previous_id, stage=PREVIOUS))
        target = previous_id
        current_text = self._text(current)
        if _fields.others(current_text, self.field) != _fields.others(previous_text, self.field):
            value = _fields.extract(previous_text, self.field, str(self.source))
            merged = _fields.compose(current_text, self.field, value, str(self.source))
            target = self._put_labelled(merged, ROLLBACK_NEXT, labels)
        self._swap(target, current_id, "roll back")
        if target != previous_id:
            self._move(ROLLBACK_NEXT, None, target)
        return self._version(self._get(version_id=target, stage=CURRENT), "current")

    def _check(self, current: Any, expected: str, step: str) -> None:
        found = self._version(current, "current").secret.fingerprint
        if found != expected:
            raise ConflictError(
                f"{self._where()}: cannot {step}: the current key changed since it was read "
                f"(fingerprint {found[:12]}, expected {expected[:12]}); another rotation ran? re-plan"
            )

    def _swap(self, to: str, away_from: str | None, step: str, name: str | None = None) -> None:
        try:
            self._move(CURRENT, to, away_from, name)
        except BackendError as exc:
            if getattr(exc, "aws_code", None) == "InvalidParameterException":
                raise ConflictError(
                    f"{self._where(name)}: cannot {step}: AWSCURRENT moved while this rotation ran "
                    "(another writer won); re-read and retry"
                ) from None
            raise

    def versions(self) -> list[VersionInfo]:
        infos: list[VersionInfo] = []
        kwargs: dict[str, Any] = {"SecretId": self.name, "IncludeDeprecated": True, "MaxResults": 100}
        while True:
            page = self._call("list_secret_version_ids", None, **kwargs)
            for item in page.get("Versions", []):
                stages = tuple(_STAGE_NAMES[s] for s in item.get("VersionStages") or [] if s in _STAGE_NAMES)
                infos.append(VersionInfo(str(item["VersionId"]), stages, _utc(item.get("CreatedDate"))))
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        epoch = datetime.min.replace(tzinfo=timezone.utc)
        return sorted(infos, key=lambda v: v.created or epoch, reverse=True)

    def read_state(self) -> tuple[dict[str, str] | None, str | None]:
        try:
            response = self._get(self.state_name, stage=CURRENT)
        except NotFoundError:
            return None, None
        try:
            data = json.loads(self._text(response))
        except ValueError:
            raise BackendError(f"{self._where(self.state_name)}: the rotation state is not JSON") from None
        if not isinstance(data, dict):
            raise BackendError(f"{self._where(self.state_name)}: the rotation state is not a JSON object")
        return {str(k): str(v) for k, v in data.items()}, str(response["VersionId"])

    def write_state(self, state: dict[str, str], expected_token: str | None) -> str:
        check_state(state, self._where(self.state_name))
        body = json.dumps({str(k): str(v) for k, v in state.items()}, sort_keys=True)
        name = self.state_name
        if expected_token is None:
            try:
                created = self._call(
                    "create_secret", name, Name=name, SecretString=body,
                    ClientRequestToken=request_token(body, "state-create"),
                    Description=f"keyvault rotation state of {self.name}: fingerprints and steps, never key values",
                )
            except BackendError as exc:
                if getattr(exc, "aws_code", None) == "ResourceExistsException":
                    raise ConflictError(
                        f"{self._where(name)}: rotation state already exists (another rotator wrote it first)"
                    ) from None
                raise
            return str(created["VersionId"])
        token = request_token(body, f"state:{expected_token}")
        put = self._call(
            "put_secret_value", name, SecretId=name, SecretString=body,
            ClientRequestToken=token, VersionStages=[STATE_NEXT],
        )
        if CURRENT in (put.get("VersionStages") or []):
            return token  # a retry of a write that already completed
        self._swap(token, expected_token, "write the rotation state", name)
        try:
            self._move(STATE_NEXT, None, token, name)
        except BackendError:
            pass  # the label is only a marker; the state is written
        return token
