"""containerlib-runtime is a process per command: the commands that only read state must
not pay for the OCI spec model and the native helper."""

from __future__ import annotations

import json
import subprocess
import sys


def test_the_state_commands_import_no_spec_model_nor_helper() -> None:
    code = (
        "import sys, json; import containerlib.cli.runtime, containerlib.runtime.bundle; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('containerlib'))))"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )
    assert "containerlib.runtime.bundle" in loaded
    for heavy in (
        "containerlib.spec.oci",
        "containerlib.runtime.specconv",
        "containerlib.runtime.warm",
        "containerlib.runtime.nativeinit",
    ):
        assert heavy not in loaded, heavy
