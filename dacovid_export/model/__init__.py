"""The DA-COVID Net network, its attention modules and its checkpoints.

Knows nothing of training, export or engines.
"""

from dacovid_export.model.attention import ChannelAttention, PositionAttention
from dacovid_export.model.checkpoint import (
    CheckpointMetadata,
    load_checkpoint,
    model_from_payload,
    read_checkpoint,
    save_checkpoint,
)
from dacovid_export.model.network import (
    DEFAULT_CLASS_NAMES,
    DACovidNet,
    ModelConfig,
    dacovid_net,
    load_backbone_weights,
)

__all__ = [
    "PositionAttention",
    "ChannelAttention",
    "DACovidNet",
    "ModelConfig",
    "DEFAULT_CLASS_NAMES",
    "dacovid_net",
    "load_backbone_weights",
    "CheckpointMetadata",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint",
    "model_from_payload",
]
