"""The data layer: the OCI runtime-spec ``config.json`` model, units and defaults, no I/O.

Everything here is plain, frozen data and pure functions, so it can be built, compared,
pickled and checked without privileges and without touching the host: :class:`Spec` and the
classes it is made of (:mod:`.oci`), whole-spec rules (:func:`validate`), the parsing of
sizes and CPU counts (:mod:`.units`) and the default configurations (:mod:`.defaults`).
Nothing of containerlib outside this package is imported.

Example:
    >>> from containerlib.spec import Spec, default_spec, parse_bytes, validate
    >>> spec = default_spec(args=("true",))
    >>> validate(spec)
    >>> Spec.from_json(spec.to_json()) == spec
    True
    >>> parse_bytes("64m", "memory")
    67108864
"""

from containerlib.spec._frozen import FrozenDict
from containerlib.spec.defaults import (
    DEFAULT_CAPABILITIES,
    DEFAULT_ENV,
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    default_mounts,
    default_spec,
)
from containerlib.spec.oci import (
    NAMESPACE_TYPES,
    OCI_VERSION,
    Box,
    Hook,
    Hooks,
    Linux,
    LinuxBlockIO,
    LinuxCapabilities,
    LinuxCPU,
    LinuxDevice,
    LinuxDeviceCgroup,
    LinuxHugepageLimit,
    LinuxIDMapping,
    LinuxInterfacePriority,
    LinuxIOPriority,
    LinuxMemory,
    LinuxNamespace,
    LinuxNetwork,
    LinuxPersonality,
    LinuxPids,
    LinuxRdma,
    LinuxResources,
    LinuxSeccomp,
    LinuxSeccompArg,
    LinuxSyscall,
    LinuxThrottleDevice,
    LinuxWeightDevice,
    Mount,
    POSIXRlimit,
    Process,
    Root,
    Scheduler,
    Spec,
    User,
)
from containerlib.spec.units import cpus_to_quota, parse_bytes, parse_cpus, parse_pids
from containerlib.spec.validate import validate

__all__ = [
    "DEFAULT_CAPABILITIES",
    "DEFAULT_ENV",
    "DEFAULT_MASKED_PATHS",
    "DEFAULT_READONLY_PATHS",
    "NAMESPACE_TYPES",
    "OCI_VERSION",
    "Box",
    "FrozenDict",
    "Hook",
    "Hooks",
    "Linux",
    "LinuxBlockIO",
    "LinuxCPU",
    "LinuxCapabilities",
    "LinuxDevice",
    "LinuxDeviceCgroup",
    "LinuxHugepageLimit",
    "LinuxIDMapping",
    "LinuxIOPriority",
    "LinuxInterfacePriority",
    "LinuxMemory",
    "LinuxNamespace",
    "LinuxNetwork",
    "LinuxPersonality",
    "LinuxPids",
    "LinuxRdma",
    "LinuxResources",
    "LinuxSeccomp",
    "LinuxSeccompArg",
    "LinuxSyscall",
    "LinuxThrottleDevice",
    "LinuxWeightDevice",
    "Mount",
    "POSIXRlimit",
    "Process",
    "Root",
    "Scheduler",
    "Spec",
    "User",
    "cpus_to_quota",
    "default_mounts",
    "default_spec",
    "parse_bytes",
    "parse_cpus",
    "parse_pids",
    "validate",
]
