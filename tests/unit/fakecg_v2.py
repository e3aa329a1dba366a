"""What a v2 cgroup directory holds when it is made, for tests/unit/fakecg.py.

The contents are those of a fresh cgroup on Linux 6.x (see the kernel's
Documentation/admin-guide/cgroup-v2.rst): the core files every cgroup has, and the files
each controller adds when the parent enables it in ``cgroup.subtree_control``.
"""

_PRESSURE = (
    "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
)
_V2_CORE = {
    "cgroup.procs": "",
    "cgroup.type": "domain\n",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.kill": "",
    "cgroup.freeze": "0\n",
    "cgroup.subtree_control": "",
    "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
}
#: Pressure stall information: core files too, where the kernel has PSI.
_V2_PSI = {
    "cgroup.pressure": "1\n",
    "cpu.pressure": _PRESSURE,
    "memory.pressure": _PRESSURE,
    "io.pressure": _PRESSURE,
}
_V2_FILES = {
    "cpuset": {
        "cpuset.cpus": "\n",
        "cpuset.mems": "\n",
        "cpuset.cpus.effective": "0-3\n",
        "cpuset.mems.effective": "0\n",
    },
    "cpu": {
        "cpu.max": "max 100000\n",
        "cpu.weight": "100\n",
        "cpu.weight.nice": "0\n",
        # The cpu controller adds the throttling figures to the core cpu.stat.
        "cpu.stat": (
            "usage_usec 0\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\n"
            "throttled_usec 0\nnr_bursts 0\nburst_usec 0\n"
        ),
    },
    "io": {"io.max": "", "io.stat": ""},
    "memory": {
        "memory.max": "max\n",
        "memory.high": "max\n",
        "memory.low": "0\n",
        "memory.min": "0\n",
        "memory.current": "0\n",
        "memory.peak": "0\n",
        "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    },
    "hugetlb": {
        "hugetlb.2MB.max": "max\n",
        "hugetlb.2MB.current": "0\n",
        "hugetlb.2MB.rsvd.max": "max\n",
        "hugetlb.1GB.max": "max\n",
        "hugetlb.1GB.current": "0\n",
        "hugetlb.1GB.rsvd.max": "max\n",
    },
    "pids": {"pids.max": "max\n", "pids.current": "0\n", "pids.events": "max 0\n"},
}
#: The io weight files, each there only with its kernel option: io.weight with the io.cost
#: controller (CONFIG_BLK_CGROUP_IOCOST), io.bfq.weight with the BFQ scheduler.
_V2_IO_WEIGHTS = {"io.weight": "default 100\n", "io.bfq.weight": "default 100\n"}
_V2_SWAP = {"memory.swap.max": "max\n", "memory.swap.current": "0\n"}
_V2_ORDER = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")
