"""Generic training: the loop (AdamW, EMA, clipping, validation, checkpoints, exact resume) and
frozen configuration dataclasses loadable from TOML."""

from forecast.training.config import TrainConfig, load_toml
from forecast.training.loop import TrainResult, resume_state, seed_everything, train

__all__ = ["TrainConfig", "TrainResult", "load_toml", "resume_state", "seed_everything", "train"]
