"""Every typed message of kray's wire protocol under one name (`from kray.protocol import messages as m`).

Pure data: dataclasses registered with a fixed type code in `wire`, defined in records (the decorator
and shared records), gcs_messages, raylet_messages and worker_messages. Who sends what:

    driver/worker -> GCS      RegisterNode, GetNodes, RegisterJob, KvPut, KvGet, KvKeys, KvDel,
                              GetClusterState, SubmissionEnded, HoldPackages,
                              Shutdown
    worker -> raylet          RegisterWorker, WorkerBlocked, WorkerSetupFailed
    driver -> raylet          PrepareRuntimeEnv (eager install of the job's runtime_env)
    driver/worker -> GCS      KvExists (is a runtime_env package uploaded already?)
    owner -> raylet           RequestLease, CancelLeaseRequest, ReturnLease, KillWorker, ReportBacklog
    any -> raylet             ObjectSealed, DeleteObjects, MakeRoom, GetNodeStats
    raylet -> owner           LeaseGranted, LeaseInfeasible, ReleaseIdleLeases, RuntimeEnvSetupFailed
    owner -> leased worker    PushTasks, CancelTask
    worker -> owner           TaskDone, GetObject (borrows: kray.protocol.borrower_messages)
    owner -> borrower         ObjectValue (reply to GetObject)
    any request               Reply (ok flag + value, or an error message)
"""

# Re-exported so that callers name every message as m.X wherever it is defined.
from kray.protocol.gcs_messages import *
from kray.protocol.raylet_messages import *
from kray.protocol.records import *
from kray.protocol.records import _fast_pickle, message  # noqa: F401
from kray.protocol.worker_messages import *
