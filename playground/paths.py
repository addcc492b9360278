"""Where the project's files live, relative to the checkout: one place, so no module counts parent folders."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS_DIR = ROOT / "assets"
MODELS_DIR = ROOT / "models"     # shipped checkpoints and the tokenizer
RUNS_DIR = ROOT / "runs"         # models trained in the page, training runs (ignored by git)
