"""ef-keras: EfficientFormer for Keras 3 / TensorFlow — models, deployment, latency tables and search."""

from setuptools import find_packages, setup

# Ranges, not pins: a library's requirements must install beside what the user already has. What 0.2 pinned
# exactly now has the tested version as its lower bound; an upper bound appears only where a known break
# exists (none today).
# The tested set of exact versions is constraints.txt, which the README's set-up commands and .ci/run apply
# with `-c constraints.txt`. The core requires `tensorflow` (the distribution every TensorFlow user has; its
# Linux wheel serves CPU-only machines too), never `tensorflow-cpu`: a second distribution of the same
# `tensorflow` package would be written over the first (keras-hub's tensorflow-text requires `tensorflow`).
# The core is what `import ef_keras` needs for models, layers, configs and checkpoint import;
# everything else is an extra, and a tool that needs a missing one says which to install
# (`ef_keras.errors.require`).
INSTALL_REQUIRES = [
    "tensorflow>=2.21",
    "keras>=3.15",
    "numpy>=1.26",
    "absl-py>=2.5",  # the CLIs' flags (tensorflow requires it too)
    "safetensors>=0.4",
]
DATA = [  # ef_keras.data / ef_keras.train: tfds and ImageFolder pipelines, the digits set, image files
    "tensorflow-datasets>=4.9.10",
    "importlib_resources>=7",  # imported by tfds 4.9.10 but not declared for Python >= 3.9
    "scikit-learn>=1.4",  # ships the embedded digits dataset
    "pillow>=10",
]
DEPLOY = [  # deploy/: converters, their runtimes for verification, and the verification photos
    "coremltools>=9.0",
    "tf2onnx>=1.17",
    "onnx>=1.23",
    "onnxruntime>=1.32",
    "ai-edge-litert>=2.3",
    "scipy>=1.11",  # deploy.mil_eval (CoreML numerics on Linux)
    "scikit-learn>=1.4",  # deploy.verify's sample photos
    "pillow>=10",
]
DENSE = [  # ef_keras.tasks.detection (keras-hub's RetinaNet, COCO mAP) and the keras-hub classes (ef_keras.models.hub)
    "keras-hub>=0.32",  # its tensorflow-text requires `tensorflow`, the distribution the core requires
    "huggingface-hub>=2.4",  # keras-hub reads hf://timm/ presets through it (otherwise only a transitive dependency)
    "pycocotools>=2.0.11",
]
SEARCH = DATA + [  # search/ and android_ios_bench/: training data, the LUT schema, charts, TFLite timing
    "ai-edge-litert>=2.3",
    "jsonschema>=4.18",
    "referencing>=0.28",  # imported with jsonschema for the schemas' cross-references
    "matplotlib>=3.8",
]
TEST = [  # the test suite; jax runs the parity fixtures under KERAS_BACKEND=jax (a test-only dependency)
    "pytest>=8",
    "pytest-timeout>=2.3",
    "jax>=0.10",
    "hypothesis>=6.100",
]

setup(
    name="ef-keras",
    version="0.2.0",
    description="EfficientFormer (vision transformers at MobileNet speed) for Keras 3, with TFLite/CoreML/ONNX "
                "deployment, on-device latency tables and the latency-driven architecture search",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["ef_keras", "ef_keras.*", "deploy", "deploy.*", "search", "search.*",
                                    "android_ios_bench", "android_ios_bench.*"]),
    package_data={"android_ios_bench": ["schema/*.json", "luts/*.json"],
                  "ef_keras": ["datasets/*.npz", "datasets/*.tsv", "datasets/*_LICENSE"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "data": DATA,
        "deploy": DEPLOY,
        "search": SEARCH,
        "dense": DENSE,
        "all": sorted(set(DATA + DEPLOY + SEARCH + DENSE)),
        "torch": ["torch>=2.1"],  # only to read .pth/.pt checkpoints
        "test": TEST,
    },
    # One console script per tool; ef-keras-describe / ef-keras-train are the 0.1 names, kept as aliases.
    entry_points={"console_scripts": [
        "ef-convert=deploy.convert:run",
        "ef-train=ef_keras.train:run",
        "ef-train-supernet=search.train_supernet:run",
        "ef-slim=search.slim:run",
        "ef-lut=android_ios_bench.host.cli:run",
        "ef-analysis=android_ios_bench.analysis.cli:run",
        "ef-describe=ef_keras.describe:run",
        "ef-keras-describe=ef_keras.describe:run",
        "ef-keras-train=ef_keras.train:run",
    ]},
    license="Apache-2.0",
)
