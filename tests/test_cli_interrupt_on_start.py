"""Ctrl-C while `convoscope` is still importing its libraries: exit 130 with one word, no traceback."""
from __future__ import annotations

import subprocess
import sys

# a finder that raises KeyboardInterrupt when convoscope.cli starts to import: what Ctrl-C in the first
# half second does (the interrupt lands inside whatever import is running)
SCRIPT = """
import sys
class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == "convoscope.cli":
            raise KeyboardInterrupt
        return None
sys.meta_path.insert(0, Interrupt())
from convoscope.__main__ import entry
sys.argv = ["convoscope", "--help"]
entry()
"""


def test_interrupt_while_importing_exits_130_without_a_traceback():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 130
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == "interrupted"


def test_the_entry_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "convoscope", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout
