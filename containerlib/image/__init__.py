"""Images: reading OCI layouts, unpacking layers safely, and the cache of unpacked layers.

Example:
    >>> from containerlib.image import LayerCache, open_layout
    >>> image = open_layout("busybox-oci", "latest")  # doctest: +SKIP
    >>> lowers = LayerCache("/var/lib/containerlib").ensure(image)  # doctest: +SKIP
"""

from containerlib.image.cache import LayerCache
from containerlib.image.layers import UnpackLimits, unpack_layer
from containerlib.image.layout import ResolvedImage, open_layout

__all__ = ["LayerCache", "ResolvedImage", "UnpackLimits", "open_layout", "unpack_layer"]
