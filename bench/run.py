"""Run the musiclust benchmark: ``python bench/run.py [--quick] ...`` (same as ``python -m musiclust bench``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musiclust.bench.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
