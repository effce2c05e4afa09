"""Cold-import cost of each provider type (issue 7): what declaring a type adds to a sender's
cold start.

The sender imports a type's module only when ``SMS_GATEWAY_PROVIDERS`` names that type
(:func:`sms_gateway.providers.config.build_registry`), after boto3, pydantic and the provider
configuration are loaded anyway. Each figure is the median over ``--runs`` fresh interpreters
(no bytecode written) of ``time.perf_counter`` around:

- import: ``import sms_gateway.providers.<module>`` on top of that baseline;
- first client: what the first send adds before any network I/O (the AWS types build their
  boto3 client then: ``pinpoint-sms-voice-v2`` / ``sns`` service models; the HTTP types their
  urllib3 pool manager).

Usage: ``python -m bench.provider_figures [--runs N]``; ``make bench`` prints it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BASELINE = "import boto3, pydantic, urllib3, sms_gateway.providers.config"
TYPES = {
    "simulator": ("sms_gateway.providers.simulator", "pass"),
    "end_user_messaging": (
        "sms_gateway.providers.end_user_messaging",
        "m.make_client('pinpoint-sms-voice-v2', 'us-east-1', 1, 1)",
    ),
    "sns": ("sms_gateway.providers.sns", "m.make_client('sns', 'us-east-1', 1, 1)"),
    "twilio": ("sms_gateway.providers.twilio", "m.transport.pool()"),
    "http": ("sms_gateway.providers.aggregator", "m.transport.pool()"),
}
PROBE = """
import time, importlib
{baseline}
t0 = time.perf_counter()
m = importlib.import_module({module!r})
t1 = time.perf_counter()
{first}
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def measure(module: str, first: str) -> tuple[float, float]:
    """One fresh interpreter: (import seconds, first-client seconds)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "layers"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }
    code = PROBE.format(baseline=BASELINE, module=module, first=first)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    imported, client = (float(x) for x in out.split())
    return imported, client


def print_figures(runs: int = 7) -> None:
    """Print one line per type: median import and first-client milliseconds."""
    print(f"provider types, cold cost on top of `{BASELINE}` (median of {runs} interpreters):")
    for kind, (module, first) in TYPES.items():
        samples = [measure(module, first) for _ in range(runs)]
        imported = statistics.median(s[0] for s in samples) * 1000
        client = statistics.median(s[1] for s in samples) * 1000
        print(f"  {kind:<19} import {imported:6.1f} ms   first client {client:6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    print_figures(parser.parse_args().runs)


if __name__ == "__main__":
    main()
