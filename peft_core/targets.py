"""Default target patterns for the backbones of experiments.models (regex over param paths)."""

# ViT (big_vision layout): q/k/v/out projections and both MLP denses of every block,
# unscanned (encoderblock_3) or scanned (encoderblock).
DENSE_TARGETS = (
    r".*encoderblock(_\d+)?/MultiHeadDotProductAttention_\d+/(query|key|value|out)/kernel",
    r".*encoderblock(_\d+)?/MlpBlock_\d+/Dense_\d+/kernel",
)
# Scanned ViT blocks carry a leading depth axis.
SCANNED = r".*/encoderblock/.*"
