"""moto's S3 server on loopback: a real S3 protocol peer for the S3 backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import botocore.session

from filecleanup.testing.processes import free_port, stop_process, wait_until_healthy

ACCESS_KEY = "filecleanup-test"
SECRET_KEY = "filecleanup-test-secret"  # moto accepts any; never a real credential
REGION = "us-east-1"


class MotoServer:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "moto.log"
        self.credentials_file = workdir / "aws-credentials"
        self.credentials_file.write_text(
            f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=log,
            )
        wait_until_healthy(f"{self.endpoint}/moto-api/", self.process, self.log)

    def stop(self) -> None:
        stop_process(self.process)

    def client(self) -> Any:  # botocore builds the S3 methods at run time
        return botocore.session.get_session().create_client(
            "s3",
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def create_bucket(self, bucket: str) -> None:
        self.client().create_bucket(Bucket=bucket)

    def put(self, bucket: str, keys: list[str]) -> None:
        s3 = self.client()
        for key in keys:
            s3.put_object(Bucket=bucket, Key=key, Body=b"photo")

    def exists(self, bucket: str, key: str) -> bool:
        listed = self.client().list_objects_v2(Bucket=bucket, Prefix=key)
        return any(item["Key"] == key for item in listed.get("Contents", []))
