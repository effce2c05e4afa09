"""sms_gateway: a multi-tenant SMS gateway for AWS Lambda.

Subpackages, by concern (see STYLE: where code lives):

- ``domain``: pure rules (message states, reason codes, GSM 03.38 content, E.164 numbers,
  routing, retry backoff). No I/O, no boto3, no SQLAlchemy, no Powertools.
- ``storage``: SQLAlchemy Core tables, engine, repositories.
- ``providers``: the provider interface and its adapters (simulator for now).
- ``api``: HTTP request/response models and RFC 9457 problem mapping.
- ``services``: use cases (ingest, send, dead-letter, receipts) with collaborators
  passed in.
- ``local``: the local stack (moto server + HTTP front + SQS pollers) that stands in for
  ``sam local`` without Docker.
- ``settings`` / ``observability`` / ``wiring``: configuration, Powertools singletons, and the
  per-container dependency wiring (the only place that reads the environment).
"""

__version__ = "0.1.0"
