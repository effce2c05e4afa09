"""Provider secrets (Twilio auth token, aggregator keys, receipt secrets) from AWS Secrets
Manager or SSM Parameter Store, read and cached by Powertools parameters (issue 7).

A reference is a string in the provider configuration:

- ``secretsmanager:<name or ARN>`` or a Secrets Manager ARN (``arn:aws:secretsmanager:...``);
- ``ssm:<parameter name>`` or an SSM ARN (``arn:aws:ssm:...:parameter/...``), decrypted
  (SecureString).

A reference may end with ``#field``: the secret is a JSON object and the value is that field
(``secretsmanager:twilio#auth_token``). Values are cached for :data:`MAX_AGE_SECONDS` per
container (Powertools' cache), so a rotated secret is picked up within that time and a warm
invocation makes no AWS call.

Receipt secrets (``SMS_GATEWAY_RECEIPT_SECRETS``) are references too when deployed;
:func:`secret_versions` gives the values a signature may be checked against during a rotation
window: a Secrets Manager secret's current value (``AWSCURRENT``), then its previous one
(``AWSPREVIOUS``, Secrets Manager's "Rotation by staging labels").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

MAX_AGE_SECONDS = 300
PREVIOUS_STAGE = "AWSPREVIOUS"

# Powertools' cache key is the secret's name (and transform), not GetSecretValue's
# VersionStage: the previous values get a provider, and so a cache, of their own.
_previous_provider: Any = None


class SecretUnavailable(RuntimeError):
    """The secret could not be read (missing, no permission, AWS down) or has no such field."""


def is_reference(text: str) -> bool:
    """Whether ``text`` is a secret reference this module reads."""
    if text.startswith(("secretsmanager:", "ssm:")):
        return True
    return text.startswith("arn:") and (":secretsmanager:" in text or ":ssm:" in text)


def _secrets_manager_name(where: str) -> str | None:
    if where.startswith("secretsmanager:"):
        return where.removeprefix("secretsmanager:")
    if where.startswith("arn:") and ":secretsmanager:" in where:
        return where
    return None


def _read_previous(name: str) -> Any:
    global _previous_provider
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    from sms_gateway.adapters.aws import CLIENT_CONFIG

    if _previous_provider is None:
        _previous_provider = SecretsProvider(boto_config=CLIENT_CONFIG)
    return _previous_provider.get(name, max_age=MAX_AGE_SECONDS, VersionStage=PREVIOUS_STAGE)


def clear_previous_cache() -> None:
    """Forget the cached previous values (tests; Powertools' ``clear_caches`` covers the rest)."""
    global _previous_provider
    _previous_provider = None


def read_secret(reference: str, *, previous: bool = False) -> str:
    """The secret ``reference`` names (see the module docstring). ``previous``: a Secrets
    Manager secret's ``AWSPREVIOUS`` value instead of its current one.

    Raises:
        SecretUnavailable: not a reference, not readable, not a string, or no such JSON field;
            ``previous`` for a reference that is not a Secrets Manager secret.
    """
    from aws_lambda_powertools.utilities import parameters

    where, _, field = reference.partition("#")
    try:
        if previous:
            name = _secrets_manager_name(where)
            if name is None:
                raise SecretUnavailable(f"{where} has no previous version (not Secrets Manager)")
            value = _read_previous(name)
        elif where.startswith("secretsmanager:"):
            value = parameters.get_secret(
                where.removeprefix("secretsmanager:"), max_age=MAX_AGE_SECONDS
            )
        elif where.startswith("ssm:"):
            value = parameters.get_parameter(
                where.removeprefix("ssm:"), decrypt=True, max_age=MAX_AGE_SECONDS
            )
        elif ":secretsmanager:" in where:
            value = parameters.get_secret(where, max_age=MAX_AGE_SECONDS)
        elif ":ssm:" in where:
            name = where.split(":parameter", 1)[1] if ":parameter" in where else where
            value = parameters.get_parameter(name, decrypt=True, max_age=MAX_AGE_SECONDS)
        else:
            raise SecretUnavailable(f"{reference!r} is not a secret reference")
    except SecretUnavailable:
        raise
    except Exception as exc:  # Powertools wraps boto errors in GetParameterError
        raise SecretUnavailable(f"cannot read secret {where}: {type(exc).__name__}") from exc
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str):
        raise SecretUnavailable(f"secret {where} is not a string")
    if not field:
        return value
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise SecretUnavailable(f"secret {where} is not a JSON object") from exc
    if not isinstance(data, dict) or not isinstance(data.get(field), str):
        raise SecretUnavailable(f"secret {where} has no string field {field!r}")
    return str(data[field])


def _no_previous_version(exc: SecretUnavailable) -> bool:
    """Whether reading AWSPREVIOUS failed because the secret has no such version (it was never
    rotated): Powertools raises GetParameterError while handling botocore's ClientError."""
    from botocore.exceptions import ClientError

    cause = exc.__cause__
    context = cause.__context__ if cause is not None else None
    return (
        isinstance(context, ClientError)
        and context.response.get("Error", {}).get("Code") == "ResourceNotFoundException"
    )


def secret_versions(value: str) -> Iterator[str]:
    """The secrets a signature made with ``value``'s secret may use, newest first, read lazily
    (a caller that stops at the first match makes no further call):

    - a Secrets Manager reference: its ``AWSCURRENT`` value, then its ``AWSPREVIOUS`` value
      when it has one (the rotation window: a provider still signing with the old key);
    - an SSM reference: its value (a parameter has no version stages);
    - anything else is a literal secret (local mode only; settings refuse it deployed): itself.

    Raises:
        SecretUnavailable: a version exists but cannot be read (permission, AWS down).
    """
    if not is_reference(value):
        yield value
        return
    yield read_secret(value)
    if _secrets_manager_name(value.partition("#")[0]) is None:
        return
    try:
        previous = read_secret(value, previous=True)
    except SecretUnavailable as exc:
        if _no_previous_version(exc):
            return
        raise
    yield previous
