"""The one place the functions build their AWS clients: short timeouts, bounded retries.

botocore's defaults are a 60 s connect timeout, a 60 s read timeout and legacy retries. The
functions time out after 10 s (ingest, status, DLQ) and 30 s (sender); inside a VPC, a missing
route or VPC endpoint to SQS, DynamoDB or Secrets Manager would then show as a hang until the
function's own timeout, with no error naming the service. With :data:`CLIENT_CONFIG` a dead
route fails in at most ``3 x (2 s + 3 s)`` plus the retry backoff, as a botocore
``ConnectTimeoutError`` / ``ReadTimeoutError`` naming the endpoint.

Values (botocore ``Config``, "Retries" in the boto3 guide):

- ``connect_timeout = 2`` s: a TCP + TLS handshake to a regional endpoint or an interface
  endpoint takes milliseconds; 2 s leaves room for a cold ENI.
- ``read_timeout = 3`` s: SQS SendMessage, DynamoDB UpdateItem / PutItem and Secrets Manager
  GetSecretValue answer in tens of milliseconds.
- ``retries = {"mode": "standard", "total_max_attempts": 3}``: the standard mode's throttling
  and transient-error retries with exponential backoff and jitter, 3 attempts in all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

CONNECT_TIMEOUT_SECONDS: Final = 2
READ_TIMEOUT_SECONDS: Final = 3
MAX_ATTEMPTS: Final = 3

CLIENT_CONFIG: Final = Config(
    connect_timeout=CONNECT_TIMEOUT_SECONDS,
    read_timeout=READ_TIMEOUT_SECONDS,
    retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
)


def _client(service: str) -> Any:
    # boto3.client uses boto3's default session, as before (the tests point it at moto's).
    import boto3

    return boto3.client(service, config=CLIENT_CONFIG)  # type: ignore[call-overload]


def sqs_client() -> SQSClient:
    """An SQS client with :data:`CLIENT_CONFIG`."""
    client: SQSClient = _client("sqs")
    return client


def dynamodb_client() -> DynamoDBClient:
    """A DynamoDB client with :data:`CLIENT_CONFIG`."""
    client: DynamoDBClient = _client("dynamodb")
    return client


def secretsmanager_client() -> SecretsManagerClient:
    """A Secrets Manager client with :data:`CLIENT_CONFIG` (pass it to Powertools'
    ``SecretsProvider(boto3_client=...)``)."""
    client: SecretsManagerClient = _client("secretsmanager")
    return client


def apigateway_client() -> Any:
    """An API Gateway management client (usage plans and API keys: the admin commands) with
    :data:`CLIENT_CONFIG`."""
    return _client("apigateway")
