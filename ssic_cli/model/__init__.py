"""Model code: GI Swin layers, transforms, entropy-model pieces, and the codec module."""
from .ssic import DEFAULT_MODEL, MODEL_CONFIGS, ModelConfig, SSICModel, build_model

__all__ = ["DEFAULT_MODEL", "MODEL_CONFIGS", "ModelConfig", "SSICModel", "build_model"]
