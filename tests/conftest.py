import sys
from pathlib import Path

# tests/scenario.py is shared by every tier
sys.path.insert(0, str(Path(__file__).resolve().parent))
