"""The network language: specs, their YAML form, the block layout, the model builder, FLOP counting, rounding.

Its files, lowest first; each imports only from files listed before it (and from `effnet.nas`'s
foundation modules):

    spec         the network as frozen dataclasses, every field checked when one is made
    rounding     the reference's rounding of channels and repeats (imports nothing)
    activations  the activation names a spec takes, as torch layers and functions
    depthwise    a depthwise conv whose weight gradient takes oneDNN's fast kernel (imports nothing)
    gated        an SE's gate multiplied into the next 1x1 conv's weights (imports nothing)
    layout       a spec expanded block by block: channels, sizes, shortcuts
    model        spec -> `nn.Module` (`build_model`)
    fold         BatchNorm folded into the convolutions of a built network, for inference
    interop      parameter names against timm's and torchvision's EfficientNet
    flops        the analytic FLOP and parameter counter
    limits       what a spec may cost (blocks, parameters, FLOPs, feature maps) and the free-memory check
    counting     `count_flops`: the analytic counter or fvcore on the built network
    spec_file    a spec as YAML: `load_spec`, `dump_spec`, `spec_from_dict`, `spec_to_dict`
"""
