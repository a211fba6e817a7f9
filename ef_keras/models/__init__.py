"""The model families on a shared base.

    plan.py           the block plan (`Block`, `Layout`): the one walk every tool reads
    config.py         what every family's architecture config shares (validation, JSON)
    common_layers.py  layers and helpers both families use (GELU, padding, LayerScale, bias tables)
    base.py           the shared model surface (`EfficientFormerBase`)
    efficientformer/     EfficientFormer (V1): config, layers, model, weights (key map), macs
    efficientformer_v2/  EfficientFormerV2: the same five modules
    hub.py            keras-hub classes shared by both families; each family folder adds keras-hub's
                      five thin files (`<family>_backbone.py`, `_image_classifier.py`, ... `_presets.py`)

Each family package registers its `Family` and variants with `ef_keras.registry` when imported.
"""
