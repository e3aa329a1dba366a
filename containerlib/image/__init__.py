"""Images: reading OCI layouts, unpacking layers safely, and the cache of unpacked layers.

Example:
    >>> from containerlib.image import LayerCache, open_layout
    >>> image = open_layout("busybox-oci", "latest")  # doctest: +SKIP
    >>> lowers = LayerCache("/var/lib/containerlib").ensure(image)  # doctest: +SKIP
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from containerlib.image.cache import LayerCache
    from containerlib.image.layers import UnpackLimits, unpack_layer
    from containerlib.image.layout import ResolvedImage, open_layout

# Imported on first use: a container run from a plain directory needs none of them, and
# importing any module of this package (image.build for ImageSource, say) would load
# them all (the command line's start pays for every module it imports).
_LAZY = {
    "LayerCache": "containerlib.image.cache",
    "UnpackLimits": "containerlib.image.layers",
    "unpack_layer": "containerlib.image.layers",
    "ResolvedImage": "containerlib.image.layout",
    "open_layout": "containerlib.image.layout",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'containerlib.image' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = ["LayerCache", "ResolvedImage", "UnpackLimits", "open_layout", "unpack_layer"]
