"""Model code: GI Swin layers, transforms, entropy-model pieces, and the codec module."""
from .ssic import MODEL_CONFIGS, ModelConfig, SSICModel, build_model

__all__ = ["MODEL_CONFIGS", "ModelConfig", "SSICModel", "build_model"]
