"""The local stack: the gateway on one machine without Docker (DESIGN section 10).

moto's server stands in for DynamoDB and SQS (table and queues created from template.yaml),
an HTTP front turns requests into API Gateway proxy events for the real handlers, and one
poller per SQS event source feeds the sender and DLQ handlers with real SQS events. Transport
only: no business rule lives here.

Entry points: ``sms-gateway local`` (:func:`sms_gateway.local.cli.main`) and
:class:`sms_gateway.local.stack.LocalStack` for tests. moto is needed (the ``local`` extra);
this package is not imported by the deployed functions.
"""
