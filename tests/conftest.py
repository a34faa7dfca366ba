import sys
from pathlib import Path

# Test helpers (tests/fixtures, tests/reference, tests/onnx_runner.py) import as top-level modules.
sys.path.insert(0, str(Path(__file__).parent))
