"""Adapters from the services' ports to AWS (SQS) and Powertools."""
