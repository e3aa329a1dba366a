"""What a v1 controller directory holds when it is made, for tests/unit/fakecg.py.

The values are those of a new cgroup on Linux 6.x; the figures (usage, stats) are zero
until a test sets them.
"""

_V1_COMMON = {"cgroup.procs": "", "tasks": "", "notify_on_release": "0\n"}
_CPU = {
    "cpu.cfs_quota_us": "-1\n",
    "cpu.cfs_period_us": "100000\n",
    "cpu.shares": "1024\n",
    "cpu.stat": "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
}
_CPUACCT = {
    "cpuacct.usage": "0\n",
    "cpuacct.stat": "user 0\nsystem 0\n",
}
_V1_FILES = {
    "memory": {
        "memory.limit_in_bytes": "9223372036854771712\n",
        "memory.soft_limit_in_bytes": "9223372036854771712\n",
        "memory.usage_in_bytes": "0\n",
        "memory.max_usage_in_bytes": "0\n",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
    },
    "pids": {"pids.max": "max\n", "pids.current": "0\n"},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"},
    # A BFQ kernel: the weight files are blkio.bfq.*, the throttle files blkio.throttle.*.
    "blkio": {
        "blkio.bfq.weight": "100\n",
        "blkio.bfq.weight_device": "default 100\n",
        "blkio.throttle.read_bps_device": "",
        "blkio.throttle.write_bps_device": "",
        "blkio.throttle.read_iops_device": "",
        "blkio.throttle.write_iops_device": "",
        "blkio.throttle.io_service_bytes": "Total 0\n",
        "blkio.throttle.io_service_bytes_recursive": "Total 0\n",
    },
    "cpu": _CPU,
    "cpuacct": _CPUACCT,
    "cpu,cpuacct": {**_CPU, **_CPUACCT},
    # A new cpuset has no CPUs and no memory nodes: no process can join it until set.
    "cpuset": {"cpuset.cpus": "\n", "cpuset.mems": "\n", "cpuset.effective_cpus": "\n"},
    "freezer": {
        "freezer.state": "THAWED\n",
        "freezer.self_freezing": "0\n",
        "freezer.parent_freezing": "0\n",
    },
    "hugetlb": {
        "hugetlb.2MB.limit_in_bytes": "9223372036854771712\n",
        "hugetlb.2MB.usage_in_bytes": "0\n",
        "hugetlb.1GB.limit_in_bytes": "9223372036854771712\n",
        "hugetlb.1GB.usage_in_bytes": "0\n",
    },
    "net_cls": {"net_cls.classid": "0\n"},
    "net_prio": {"net_prio.prioidx": "1\n", "net_prio.ifpriomap": "lo 0\n"},
}
_MEMSW = {"memory.memsw.limit_in_bytes": "9223372036854771712\n"}
