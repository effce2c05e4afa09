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
"""

from __future__ import annotations

import json

MAX_AGE_SECONDS = 300


class SecretUnavailable(RuntimeError):
    """The secret could not be read (missing, no permission, AWS down) or has no such field."""


def is_reference(text: str) -> bool:
    """Whether ``text`` is a secret reference this module reads."""
    if text.startswith(("secretsmanager:", "ssm:")):
        return True
    return text.startswith("arn:") and (":secretsmanager:" in text or ":ssm:" in text)


def read_secret(reference: str) -> str:
    """The secret ``reference`` names (see the module docstring).

    Raises:
        SecretUnavailable: not a reference, not readable, not a string, or no such JSON field.
    """
    from aws_lambda_powertools.utilities import parameters

    where, _, field = reference.partition("#")
    try:
        if where.startswith("secretsmanager:"):
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
