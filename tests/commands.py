"""helm and kubectl as a user runs them, against the test cluster."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


class Cli:
    def __init__(self, helm: Path, kubeconfig: Path) -> None:
        self.helm_binary = helm
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig)}

    def run(
        self, *argv: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=self.env, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv[:3])} failed ({result.returncode}):\n{result.stderr}")
        return result

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.helm_binary), *args, check=check)

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, stdin=stdin, check=check)

    def can_i(self, service_account: str, *args: str) -> bool:
        result = self.kubectl(
            "auth", "can-i", f"--as=system:serviceaccount:{service_account}", *args, check=False
        )
        return result.stdout.strip() == "yes"


def set_flags(values: dict[str, str]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
