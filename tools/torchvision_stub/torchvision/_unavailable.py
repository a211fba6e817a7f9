"""Placeholders for the parts of torchvision that this stub does not provide.

timm imports some torchvision names at module level (data transforms, dataset classes) although
building a model never uses them. `make_getattr` gives a stub module a module-level `__getattr__`
that hands out a placeholder class for any such name; the placeholder raises a clear ImportError
as soon as it is instantiated or called, so nothing silently works half-way.
"""

_CACHE = {}


def unavailable(module_name, name):
    """Return (and cache) a placeholder class for `module_name.name` that fails when used."""
    key = (module_name, name)
    if key not in _CACHE:
        full = f"{module_name}.{name}"

        def _fail(*args, **kwargs):
            raise ImportError(
                f"{full} is not provided by the torchvision stub in tools/torchvision_stub "
                "(it only lets timm import for model building); install a real torchvision "
                "that matches your torch to use it."
            )

        _CACHE[key] = type(name, (), {"__init__": _fail, "__module__": module_name, "__doc__": f"Unavailable: {full}."})
    return _CACHE[key]


def make_getattr(module_name):
    """Module-level `__getattr__` for a stub module: placeholders for public names only."""

    def __getattr__(name):
        if name.startswith("_"):
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        return unavailable(module_name, name)

    return __getattr__
