"""A throwaway S3-compatible server for the test run: moto's standalone server on a loopback port.

The suite runs everything file-shaped (lake, raw copies, reports, outcome drops, audit
checkpoints, MLflow artifacts) on object storage as well as on local disk. moto's server
speaks the S3 protocol over HTTP, so the platform's real s3fs and boto3 clients talk to it
exactly as they would to S3; it is started once per test run and stopped at the end. Each
test home gets a bucket of its own.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid

import boto3

ACCESS_KEY = "ml-platform-test"
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """moto's S3 server in a child process, listening on 127.0.0.1 only."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> MotoServer:
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"moto's server exited with status {self.process.returncode}; is moto[server] installed?"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto's server did not listen on port {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def environment(self) -> dict[str, str]:
        """The standard AWS variables that point s3fs, boto3 and MLflow at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": ACCESS_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    def client(self):
        """A boto3 client of this server, for tests that look at (or tamper with) the bucket directly."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=ACCESS_KEY,
            region_name=REGION,
        )

    def create_bucket(self, prefix: str = "home") -> str:
        """A new empty bucket; returns its name."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key in the bucket under ``prefix``."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


def aws_variables() -> tuple[str, ...]:
    """The AWS variables a test home sets or clears, so no test reads a developer's real credentials."""
    return ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_PROFILE")
