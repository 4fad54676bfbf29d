"""A process that only loads the app (an export worker, a web worker serving other pages)
does not import pyHanko: about 40 MB of memory, imported on the first seal or seal check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from portal.documents import seal

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = """
import sys
from tests.bench.common import base_config
from portal import create_app
create_app(base_config("sqlite://"))
print(sorted({m.split(".")[0] for m in sys.modules} & {"pyhanko", "pyhanko_certvalidator"}))
"""


def test_create_app_does_not_import_pyhanko(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env={"PORTAL_INSTANCE": str(tmp_path / "instance"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_seal_check_imports_it_when_needed() -> None:
    result = seal.check_seal(b"%PDF-1.7\n%nothing here\n")
    assert result.outcome in ("unreadable", "unsigned")
    assert "pyhanko.sign.validation" in sys.modules
