"""HTTP API v1: request/response models, tenancy, RFC 9457 problem mapping."""
