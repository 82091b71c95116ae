"""Configuration of a timm CNN backbone with a segmentation head (DeepLabV3 or PSPNet)."""

from transformers import PretrainedConfig


class TimmSegmentationConfig(PretrainedConfig):
    """A semantic-segmentation student built from a timm backbone and a decode head.

    Args:
        backbone: timm model name; the model must support ``features_only=True``.
        decode_head: the head on the last backbone stage: ``"deeplabv3"`` (ASPP) or ``"pspnet"``
            (pyramid pooling).
        output_stride: the backbone's output stride (8 dilates the last two stages, as DeepLabV3 does).
        semantic_loss_ignore_index: the label value the model's own loss ignores.
        num_labels, id2label, label2id: the classes, as for any transformers model.
    """

    model_type = "timm_segmentation"

    def __init__(
        self,
        backbone: str = "resnet18",
        decode_head: str = "deeplabv3",
        output_stride: int = 8,
        semantic_loss_ignore_index: int = 255,
        **kwargs,
    ) -> None:
        self.backbone = backbone
        self.decode_head = decode_head
        self.output_stride = output_stride
        self.semantic_loss_ignore_index = semantic_loss_ignore_index
        super().__init__(**kwargs)
