"""Exit codes: the agents' real API.

Plain ints rather than an IntEnum: ``enum`` costs milliseconds to import and
these are read on every monitor.
"""

from __future__ import annotations

# OCF resource agent API 1.1 (plus Pacemaker's degraded codes).
SUCCESS = 0
ERR_GENERIC = 1
ERR_ARGS = 2
ERR_UNIMPLEMENTED = 3
ERR_PERM = 4
ERR_INSTALLED = 5
ERR_CONFIGURED = 6
NOT_RUNNING = 7
RUNNING_PROMOTED = 8
FAILED_PROMOTED = 9
DEGRADED = 190
DEGRADED_PROMOTED = 191

OCF_NAMES = {
    SUCCESS: "OCF_SUCCESS",
    ERR_GENERIC: "OCF_ERR_GENERIC",
    ERR_ARGS: "OCF_ERR_ARGS",
    ERR_UNIMPLEMENTED: "OCF_ERR_UNIMPLEMENTED",
    ERR_PERM: "OCF_ERR_PERM",
    ERR_INSTALLED: "OCF_ERR_INSTALLED",
    ERR_CONFIGURED: "OCF_ERR_CONFIGURED",
    NOT_RUNNING: "OCF_NOT_RUNNING",
    RUNNING_PROMOTED: "OCF_RUNNING_PROMOTED",
    FAILED_PROMOTED: "OCF_FAILED_PROMOTED",
    DEGRADED: "OCF_DEGRADED",
    DEGRADED_PROMOTED: "OCF_DEGRADED_PROMOTED",
}

# Fence agent API: callers only ever distinguish these three.
FENCE_OK = 0
FENCE_FAIL = 1
FENCE_STATUS_OFF = 2
