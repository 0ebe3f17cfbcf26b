"""Session 38: bench.py with its DataLoader workers at a chosen scheduling priority (PRIO=idle|nice19|none), for the
loader-worker experiment of docs/results/bench_cpu_s38/README.md (arguments: bench.py overrides)."""
import os, sys, runpy
sys.path.insert(0, "/work/main/src")
import yolo9000.data.sharded as sh
orig = sh.worker_init
prio = os.environ.get("PRIO", "none")
def worker_init(worker_id):
    orig(worker_id)
    if prio == "idle":
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    elif prio == "nice19":
        os.nice(19)
    if prio != "none" and worker_id == 0:
        print(f"worker {worker_id}: policy {os.sched_getscheduler(0)} nice {os.nice(0)}", file=sys.stderr)
sh.worker_init = worker_init
sys.argv = ["/work/main/src/bench.py", *sys.argv[1:]]
runpy.run_path("/work/main/src/bench.py", run_name="__main__")
