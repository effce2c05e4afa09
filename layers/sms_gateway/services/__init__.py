"""Use cases. Each service gets its collaborators passed in (see :mod:`sms_gateway.wiring`)."""
