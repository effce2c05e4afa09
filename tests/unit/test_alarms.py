"""template.yaml: alarms that reach someone and the dashboard (issue 11, item 3).

Computed from the template and the code, not from a list kept here: every alarm found must
notify the topic, every function found must have an Errors and a Throttles alarm, and the
metric names the dashboard shows are those the code emits.
"""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sms_gateway.domain.content import Encoding
from sms_gateway.domain.message import QueuedMessage
from sms_gateway.local.template import Resolver, SamTemplate
from sms_gateway.services.dead_letter import DeadLetter, DeadLetterService
from sms_gateway.storage.memory import MemoryStores

ROOT = Path(__file__).resolve().parents[2]
PSEUDO = {
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "111122223333",
    "AWS::Partition": "aws",
    "AWS::StackName": "sms-gateway",
}
TOPIC_ACTION = {"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}


@pytest.fixture(scope="module")
def template() -> SamTemplate:
    return SamTemplate.from_file(ROOT / "template.yaml")


def _resolver(template: SamTemplate, **overrides: str) -> Resolver:
    resolver = Resolver(template, pseudo_parameters=PSEUDO, parameter_overrides=overrides)
    for logical_id in template.resources:
        resolver.refs.setdefault(logical_id, f"{logical_id}-physical")
    resolver.attributes[("SendQueue", "QueueName")] = "sms-gateway-send"
    resolver.attributes[("DeadLetterQueue", "QueueName")] = "sms-gateway-dead-letter"
    resolver.attributes[("EumEventsFailedQueue", "QueueName")] = "sms-gateway-eum-events-failed"
    return resolver


def _alarms(template: SamTemplate) -> dict[str, dict[str, Any]]:
    return {
        logical_id: dict(resource["Properties"])
        for logical_id, resource in template.resources_of_type("AWS::CloudWatch::Alarm").items()
    }


def test_every_alarm_notifies_the_topic_on_alarm_and_on_ok(template: SamTemplate) -> None:
    alarms = _alarms(template)
    assert len(alarms) >= 6
    for logical_id, alarm in alarms.items():
        assert alarm["AlarmActions"] == [TOPIC_ACTION], logical_id
        assert alarm["OKActions"] == [TOPIC_ACTION], logical_id
        assert alarm.get("ActionsEnabled", True) is True, logical_id


@pytest.mark.parametrize(
    ("overrides", "topic"),
    [
        ({}, "AlarmTopic-physical"),
        (
            {"AlarmTopicArn": "arn:aws:sns:eu-west-1:111122223333:oncall"},
            "arn:aws:sns:eu-west-1:111122223333:oncall",
        ),
    ],
)
def test_the_topic_is_created_unless_one_is_given(
    template: SamTemplate, overrides: dict[str, str], topic: str
) -> None:
    resolver = _resolver(template, **overrides)
    assert resolver.resolve(TOPIC_ACTION) == topic
    created = template.resources["AlarmTopic"]["Condition"]
    assert resolver.condition(created) is (not overrides)
    subscription = template.resources["AlarmEmailSubscription"]
    assert resolver.condition(subscription["Condition"]) is False  # no e-mail given


def test_an_email_subscribes_to_the_created_topic_only(template: SamTemplate) -> None:
    subscription = template.resources["AlarmEmailSubscription"]
    with_email = _resolver(template, AlarmEmail="ops@example.com")
    assert with_email.condition(subscription["Condition"]) is True
    props = with_email.resolve(subscription["Properties"])
    assert props == {
        "TopicArn": "AlarmTopic-physical",
        "Protocol": "email",
        "Endpoint": "ops@example.com",
    }
    both = _resolver(
        template,
        AlarmEmail="ops@example.com",
        AlarmTopicArn="arn:aws:sns:eu-west-1:111122223333:oncall",
    )
    assert both.condition(subscription["Condition"]) is False


def _lambda_alarms(template: SamTemplate, metric: str) -> set[str]:
    """Functions (logical ids) with an alarm on ``AWS/Lambda`` ``metric`` > 0, per function."""
    found = set()
    for alarm in _alarms(template).values():
        if (alarm["Namespace"], alarm["MetricName"]) != ("AWS/Lambda", metric):
            continue
        (dimension,) = alarm["Dimensions"]
        assert dimension["Name"] == "FunctionName"
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
        found.add(dimension["Value"]["Ref"])
    return found


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_every_function_has_an_errors_and_a_throttles_alarm(
    template: SamTemplate, metric: str
) -> None:
    functions = set(template.resources_of_type("AWS::Serverless::Function"))
    assert "SenderFunction" in functions and len(functions) >= 5
    assert _lambda_alarms(template, metric) == functions


def _emitted_dead_letter_metrics() -> list[tuple[str, float, str, dict[str, str]]]:
    """What the DLQ function's service emits when it records one dead letter."""
    recorded: list[tuple[str, float, str, dict[str, str]]] = []

    class Sink:
        def add(self, name: str, value: float, unit: str, **dimensions: str) -> None:
            recorded.append((name, value, unit, dimensions))

    stores = MemoryStores()
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    service = DeadLetterService(stores.messages, stores.dead_letters, Sink(), lambda: now)
    msg = QueuedMessage(
        message_id="m-1",
        tenant_id="t",
        to="+12025550143",
        body="hi",
        encoding=Encoding.GSM7,
        segments=1,
        max_attempts=1,
        idempotency_key="k",
        created_at=now,
    )
    assert service.process(DeadLetter("sqs-1", msg.model_dump_json(), 3))
    return recorded


def test_the_dead_letter_alarm_watches_the_metric_the_code_emits(template: SamTemplate) -> None:
    (emitted,) = [m for m in _emitted_dead_letter_metrics() if m[0] == "DeadLetters"]
    name, value, unit, dimensions = emitted
    assert (value, unit, dimensions) == (1, "Count", {})
    globals_env = template.function_globals["Environment"]["Variables"]
    alarm = _alarms(template)["DeadLettersRecordedAlarm"]
    assert alarm["Namespace"] == globals_env["POWERTOOLS_METRICS_NAMESPACE"]
    assert alarm["MetricName"] == name
    # Powertools adds the service dimension to a metric without dimensions of its own
    assert alarm["Dimensions"] == [
        {"Name": "service", "Value": globals_env["POWERTOOLS_SERVICE_NAME"]}
    ]
    assert (alarm["Statistic"], alarm["Threshold"]) == ("Sum", 0)


def test_queue_age_api_5xx_and_latency_alarms(template: SamTemplate) -> None:
    resolver = _resolver(template)
    alarms = {k: resolver.resolve(v) for k, v in _alarms(template).items()}
    age = alarms["SendQueueOldestMessageAlarm"]
    assert (age["Namespace"], age["MetricName"]) == ("AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert age["Dimensions"] == [{"Name": "QueueName", "Value": "sms-gateway-send"}]
    assert int(age["Threshold"]) == 900  # AlarmOldestMessageSeconds' default
    api_name = resolver.resolve(template.resources["SmsApi"]["Properties"]["Name"])
    five = alarms["Api5xxAlarm"]
    assert (five["Namespace"], five["MetricName"]) == ("AWS/ApiGateway", "5XXError")
    assert five["Dimensions"] == [{"Name": "ApiName", "Value": api_name}]
    latency = alarms["ApiLatencyAlarm"]
    assert (latency["MetricName"], latency["ExtendedStatistic"]) == ("Latency", "p99")
    assert latency["Dimensions"] == [{"Name": "ApiName", "Value": api_name}]
    assert int(latency["Threshold"]) == 3000


def _metric_names_in_code() -> set[str]:
    """Every ``<sink>.add("Name", value, "Unit", ...)`` in the package: the EMF metrics."""
    names = set()
    for path in (ROOT / "layers" / "sms_gateway").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add"
                and len(node.args) >= 3
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[2], ast.Constant)
                and node.args[2].value in ("Count", "Milliseconds", "Seconds")
            ):
                names.add(str(node.args[0].value))
    return names


def test_the_dashboard_shows_every_metric_the_gateway_emits(template: SamTemplate) -> None:
    body = json.loads(
        _resolver(template).resolve(template.resources["Dashboard"]["Properties"]["DashboardBody"])
    )
    shown: set[str] = set()
    text = json.dumps(body)
    for widget in body["widgets"]:
        for metric in widget["properties"].get("metrics", []):
            if isinstance(metric, list) and metric[0] == "SmsGateway":
                shown.add(metric[1])
    emitted = _metric_names_in_code()
    assert {"DeadLetters", "MessagesAccepted", "SendLatency", "DeadLetterReplays"} <= emitted
    for name in emitted - shown:  # the dimensional ones come through SEARCH expressions
        assert f'MetricName=\\"{name}\\"' in text, name
    assert "sms-gateway-send" in text and "sms-gateway-dead-letter" in text
    assert "sms-gateway-eum-events-failed" in text
    functions = set(template.resources_of_type("AWS::Serverless::Function"))
    for function in functions:  # Errors/Throttles per function, by its physical name
        assert f"{function}-physical" in text, function


def test_failed_end_user_messaging_events_go_to_an_alarmed_queue(template: SamTemplate) -> None:
    """SNS invokes EumEventsFunction asynchronously: an event that fails every retry goes to
    EumEventsFailedQueue (on-failure destination), whose visible messages raise an alarm."""
    function = template.resources["EumEventsFunction"]["Properties"]
    config = function["EventInvokeConfig"]
    assert config["MaximumRetryAttempts"] == 2
    assert config["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["EumEventsFailedQueue", "Arn"]},
    }
    queue = template.resources["EumEventsFailedQueue"]
    assert queue["Type"] == "AWS::SQS::Queue"
    assert queue["Properties"]["MessageRetentionPeriod"] == 1209600
    resolver = _resolver(template)
    alarm = resolver.resolve(_alarms(template)["EumEventsFailedAlarm"])
    assert (alarm["Namespace"], alarm["MetricName"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": "sms-gateway-eum-events-failed"}]
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "Maximum",
        0,
        "GreaterThanThreshold",
    )
