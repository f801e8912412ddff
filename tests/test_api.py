"""The public face (`import ofa_tf`, docs/api.md): its names, and the page's example run as
it stands in the Markdown, so the page cannot go stale."""

import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, "docs", "api.md")


def _python_blocks(path: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", open(path, encoding="utf-8").read(), flags=re.S)


@pytest.mark.unit
def test_the_page_lists_every_public_name_and_only_those():
    import ofa_tf
    table = open(PAGE, encoding="utf-8").read().split("\n## ")[0]
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    listed = {name for cell in first_cells for name in re.findall(r"`(\w+)`", cell)}
    public = set(ofa_tf.__all__) - {"__version__"}
    assert public == listed, (public - listed, listed - public)
    assert 15 <= len(public) <= 25  # a small face


@pytest.mark.integration
def test_the_pages_example_trains_searches_and_exports(tmp_path):
    """The example, as the page has it, in a fresh process in an empty folder (with the
    shipped data beside it): a run directory, a searched subnet under the budget, a TFLite file."""
    blocks = _python_blocks(PAGE)
    assert len(blocks) == 1
    os.symlink(os.path.join(ROOT, "data"), tmp_path / "data")
    done = subprocess.run([sys.executable, "-c", blocks[0]], cwd=tmp_path, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained to epoch 2" in done.stdout and "best subnet:" in done.stdout
    metadata = json.loads((tmp_path / "exports" / "best.json").read_text())
    assert metadata["macs"] <= 8e6 and (tmp_path / "exports" / "best.tflite").stat().st_size > 10_000
    assert (tmp_path / "runs" / "api_example" / "config.json").is_file()
