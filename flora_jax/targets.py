"""Target patterns for FLoRA on convolutional backbones (regex over '/'-joined param paths)."""

# Every kernel whose module name contains "conv" / "Conv": Flax's Conv_0, ConvNeXt's stem_conv,
# downsample{s}_conv, dwconv and the 2-D pwconv1/pwconv2 kernels; never a Dense head.
CONV_TARGETS = r".*[Cc]onv[^/]*/kernel"
