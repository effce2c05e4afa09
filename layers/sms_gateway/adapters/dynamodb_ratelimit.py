"""The :class:`~sms_gateway.services.ports.BucketStore` port over DynamoDB: one item per
provider in the template's ``RateLimitTable``, one conditional ``UpdateItem`` per call.

Item shape: ``{"provider": S (partition key), "empty_at_ns": N}``: the epoch nanosecond at
which the provider's token bucket is empty (:mod:`sms_gateway.domain.ratelimit`). A provider
without an item has a full bucket; the first take creates the item (``UpdateItem`` upserts).

Why this is safe across concurrent invocations: DynamoDB evaluates a write's
``ConditionExpression`` and applies its ``UpdateExpression`` as one atomic operation on the
item, and ``SET a = a + :n`` computes from the stored value ("Condition expressions" and
"Update expressions: incrementing and decrementing numeric attributes" in the DynamoDB
Developer Guide). A take either finds the tokens it planned on and removes exactly its cost,
or fails with ``ConditionalCheckFailedException``; ``ReturnValuesOnConditionCheckFailure =
ALL_OLD`` returns the item as it stood, so a lost race costs no extra read. Numbers are
integers of at most 19 digits (DynamoDB keeps 38), so the arithmetic is exact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from sms_gateway.domain.ratelimit import ConditionalTake

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

KEY: Final = "provider"
VALUE: Final = "empty_at_ns"
_NAMES: Final = {"#e": VALUE}
_CONDITION_FAILED: Final = "ConditionalCheckFailedException"


def _stored(item: Any) -> int | None:
    if not item or VALUE not in item:
        return None
    return int(item[VALUE]["N"])


class DynamoDbBucketStore:
    """Token buckets in the DynamoDB table ``table`` (partition key ``provider``, S).

    Errors other than a failed condition are boto3's (``ClientError``, connection errors) and
    propagate. IAM: ``dynamodb:UpdateItem`` on the table is all it needs.
    """

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    def take(self, provider: str, take: ConditionalTake) -> tuple[bool, int | None]:
        """One conditional UpdateItem. ``(True, new empty_at_ns)`` when applied, else
        ``(False, stored empty_at_ns or None)``."""
        if take.from_full:
            update = "SET #e = :new"
            condition = "attribute_not_exists(#e) OR #e <= :full"
            values = {
                ":new": {"N": str(take.apply(None))},
                ":full": {"N": str(take.full_threshold_ns)},
            }
        else:
            update = "SET #e = #e + :cost"
            condition = "#e > :full AND #e <= :latest"
            values = {
                ":cost": {"N": str(take.cost_ns)},
                ":full": {"N": str(take.full_threshold_ns)},
                ":latest": {"N": str(take.latest_empty_at_ns)},
            }
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key={KEY: {"S": provider}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues=values,
                ReturnValues="UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != _CONDITION_FAILED:
                raise
            return False, _stored(error.response.get("Item"))
        new = _stored(answer.get("Attributes"))
        if new is None:  # pragma: no cover - UPDATED_NEW always carries the SET attribute
            raise RuntimeError(f"UpdateItem on {self._table} returned no {VALUE}")
        return True, new

    def hold(self, provider: str, until_ns: int) -> None:
        """One conditional UpdateItem: ``empty_at_ns = until_ns`` unless it is already later
        (then the failed condition means there is nothing to do)."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key={KEY: {"S": provider}},
                UpdateExpression="SET #e = :until",
                ConditionExpression="attribute_not_exists(#e) OR #e < :until",
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues={":until": {"N": str(until_ns)}},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != _CONDITION_FAILED:
                raise
