"""The load-test image's entry point on ECS Fargate (infra/loadtest): `worker` or `master`.

`worker [-- ARGS]`: ECS puts the claim credential from Secrets Manager into CLAIM_CERTIFICATE_PEM and
CLAIM_PRIVATE_KEY; they are written to 0600 files under CLAIM_DIR, removed from the environment, and the
process becomes `python -m device_sim locust --worker ARGS`. The master names the same fixed paths
(`python -m device_sim fargate start` puts them on its command line).

`master --upload s3://BUCKET/reports/RUN/ [-- ARGS]`: runs `python -m device_sim locust --master --headless
ARGS` with its report, HTML and Locust's CSV under REPORT_DIR, passes SIGTERM on (ECS stops a task with it,
and the master then writes the partial report), and uploads whatever was written, whatever the exit code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from device_sim.keys import write_private

CLAIM_DIR = Path("/tmp/device-sim-claim")
CLAIM_CERT_FILE = CLAIM_DIR / "claim.cert.pem"
CLAIM_KEY_FILE = CLAIM_DIR / "claim.key.pem"
# Debian's copy of Amazon Root CA 1 (the image's ca-certificates), the CA of AWS IoT's ATS endpoints.
AMAZON_ROOT_CA = Path("/etc/ssl/certs/Amazon_Root_CA_1.pem")
REPORT_DIR = Path("/tmp/device-sim-reports")
ENV_CLAIM_CERTIFICATE = "CLAIM_CERTIFICATE_PEM"  # infra/loadtest/tasks.py sets these two
ENV_CLAIM_KEY = "CLAIM_PRIVATE_KEY"


def write_claim(environ: MutableMapping[str, str], claim_dir: Path = CLAIM_DIR) -> tuple[Path, Path]:
    """The claim credential from the environment into 0600 files; the variables are removed."""
    certificate, key = environ.pop(ENV_CLAIM_CERTIFICATE, ""), environ.pop(ENV_CLAIM_KEY, "")
    if not all(value.lstrip().startswith("-----BEGIN ") for value in (certificate, key)):
        raise SystemExit(
            f"error: {ENV_CLAIM_CERTIFICATE} and {ENV_CLAIM_KEY} must hold the claim certificate and key as "
            "PEM (the task definition takes them from the claim secret's certificatePem and privateKey)"
        )
    claim_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(claim_dir, 0o700)
    cert_file, key_file = claim_dir / CLAIM_CERT_FILE.name, claim_dir / CLAIM_KEY_FILE.name
    cert_file.write_text(certificate)
    write_private(key_file, key.encode())
    return cert_file, key_file


def master_command(args: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "device_sim",
        "locust",
        "--master",
        "--headless",
        *args,
        "--report",
        str(REPORT_DIR / "report.json"),
        "--html",
        str(REPORT_DIR / "report.html"),
        "--csv",
        str(REPORT_DIR / "locust"),
    ]


def upload(destination: str, directory: Path = REPORT_DIR, s3: Any = None) -> list[str]:
    """Every file of `directory` to s3://bucket/prefix/; the keys written."""
    if not destination.startswith("s3://"):
        raise SystemExit(f"error: --upload must be s3://BUCKET/PREFIX/, not {destination!r}")
    bucket, _, prefix = destination.removeprefix("s3://").partition("/")
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    keys = []
    for path in sorted(p for p in directory.glob("*") if p.is_file()):
        key = f"{prefix.rstrip('/')}/{path.name}" if prefix else path.name
        s3.upload_file(str(path), bucket, key)
        keys.append(key)
    return keys


def run_master(destination: str, args: list[str]) -> int:
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen(master_command(args))

    def forward(signum: int, _frame: Any) -> None:
        child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    code = child.wait()
    keys = upload(destination)
    print(f"report: {len(keys)} files in {destination}", file=sys.stderr, flush=True)
    return code


def main(argv: list[str]) -> int:
    role, rest = (argv[0], argv[1:]) if argv else ("", [])
    upload_to = None
    if role == "master" and rest[:1] == ["--upload"] and len(rest) >= 2:
        upload_to, rest = rest[1], rest[2:]
    args = rest[1:] if rest[:1] == ["--"] else rest
    if role == "worker":
        write_claim(os.environ)
        command = [sys.executable, "-m", "device_sim", "locust", "--worker", *args]
        os.execv(sys.executable, command)
    if role == "master" and upload_to:
        return run_master(upload_to, args)
    print(
        "usage: container worker [-- ARGS] | master --upload s3://BUCKET/PREFIX/ [-- ARGS]", file=sys.stderr
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
