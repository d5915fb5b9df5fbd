"""Drop what the operator never loads from the image's virtual environment: botocore's models of the
AWS services other than the ones its S3 backend and credential chain use (about 27 MB).

    python prune_site_packages.py VENV
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
from pathlib import Path

# S3 for the calls; STS (assume role, web identity / IRSA), SSO, SSO-OIDC and Sign-In for the
# credential chain. The top-level files (endpoints, partitions, retry and default settings) stay.
BOTOCORE_SERVICES_KEPT = {"s3", "sts", "sso", "sso-oidc", "signin"}


def main(venv: Path) -> None:
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    models = purelib / "botocore" / "data"
    removed = 0
    for service in models.iterdir():
        if service.is_dir() and service.name not in BOTOCORE_SERVICES_KEPT:
            removed += sum(path.stat().st_size for path in service.rglob("*") if path.is_file())
            shutil.rmtree(service)
    print(f"pruned {removed / 1e6:.0f} MB of botocore service models from {models}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
