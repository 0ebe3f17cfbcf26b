#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, from Debian's packages (slurmctld, slurmd, munge), for trying the
# project's `hydra/launcher=submitit_slurm` (array tasks, SIGUSR1 requeue) without a real cluster.
#
#   sudo tests/slurm/local_cluster.sh start    # install the packages if missing, write the config, start the
#                                              # daemons, wait until the node is idle (idempotent)
#   tests/slurm/local_cluster.sh status        # sinfo / squeue
#   eval "$(tests/slurm/local_cluster.sh env)" # export SLURM_CONF (only needed when /etc/slurm/slurm.conf is not ours)
#   sudo tests/slurm/local_cluster.sh stop     # stop slurmd, slurmctld (and munged when this script started it)
#
# Everything lives in one folder owned by the script, $SLURM_LOCAL_DIR (default /tmp/yolo9000-slurm): etc/
# (slurm.conf, cgroup.conf), spool/, state/, log/ and the pid files. /etc/slurm/slurm.conf becomes a link to
# etc/slurm.conf when it does not exist (so plain `sinfo` / `sbatch` work); otherwise export SLURM_CONF (see `env`).
# munged runs with the system's key and socket (/etc/munge/munge.key, /run/munge). The node is sized from
# `nproc` and /proc/meminfo; one partition ($SLURM_LOCAL_PARTITION, default `debug`), no accounting daemon
# (submitit falls back from sacct to squeue), CPU only. Must run as root (start / stop).
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/yolo9000-slurm}
PARTITION=${SLURM_LOCAL_PARTITION:-debug}
CTLD_PORT=${SLURM_LOCAL_CTLD_PORT:-6817}
SLURMD_PORT=${SLURM_LOCAL_SLURMD_PORT:-6818}
CONF=$DIR/etc/slurm.conf
SYSTEM_CONF=/etc/slurm/slurm.conf
HOST=$(hostname -s)
export SLURM_CONF=$CONF

log() { echo "[local_cluster] $*" >&2; }
die() { log "error: $*"; exit 1; }

alive() { # alive <pid file>: the process in the pid file runs
  [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

need_root() { [[ $(id -u) == 0 ]] || die "run as root (the daemons and their folders need it)"; }

install_packages() {
  if [[ -x /usr/sbin/slurmctld && -x /usr/sbin/slurmd && -x /usr/sbin/munged ]] && command -v sbatch >/dev/null; then
    return
  fi
  log "installing slurmctld slurmd slurm-client munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null ||
    { apt-get update -q >/dev/null && apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null; }
}

write_config() {
  mkdir -p "$DIR"/{etc,log,state,spool/slurmd,run}
  local cpus mem_mb
  cpus=$(nproc)
  # slurmd drains a node whose configured memory exceeds what it finds: stay below MemTotal.
  mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  local tmp=$CONF.tmp
  cat >"$tmp" <<CONF
# Written by tests/slurm/local_cluster.sh: single-node cluster for tests (CPU only, no accounting).
ClusterName=local
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job waits cred_expire + 1 s before it may start again (default 120 s)
AuthInfo=cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/slurmd
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobRequeue=1
KillWait=15
MinJobAge=300
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
  if [[ -f $CONF ]] && cmp -s "$tmp" "$CONF"; then
    rm -f "$tmp"
  else
    mv "$tmp" "$CONF"
    CONF_CHANGED=1
  fi
  # cgroups are not used (proctrack/linuxproc, task/none); an explicit file keeps slurmd from guessing.
  printf '%s\n' "# Written by tests/slurm/local_cluster.sh (cgroups unused)" "CgroupAutomount=no" \
    "ConstrainCores=no" "ConstrainRAMSpace=no" >"$DIR/etc/cgroup.conf"
  if [[ ! -e $SYSTEM_CONF && ! -L $SYSTEM_CONF ]]; then
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -s "$CONF" "$SYSTEM_CONF"
    log "linked $SYSTEM_CONF -> $CONF"
  elif [[ $(readlink "$SYSTEM_CONF" || true) != "$CONF" ]]; then
    log "$SYSTEM_CONF exists and is not ours: export SLURM_CONF=$CONF for the client commands"
  fi
}

start_munge() {
  if pgrep -x munged >/dev/null; then
    return
  fi
  mkdir -p /etc/munge /var/log/munge /run/munge /var/lib/munge
  [[ -s /etc/munge/munge.key ]] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  chown -R munge:munge /etc/munge /var/log/munge /run/munge /var/lib/munge
  chmod 400 /etc/munge/munge.key
  runuser -u munge -- /usr/sbin/munged
  touch "$DIR/run/munged.ours"
  log "munged started"
}

start_daemons() {
  if [[ -n ${CONF_CHANGED:-} ]] && alive "$DIR/run/slurmctld.pid"; then
    log "slurm.conf changed: restarting the daemons" # AuthInfo and ports need a restart, not a reconfigure
    stop_pidfile slurmd "$DIR/run/slurmd.pid"
    stop_pidfile slurmctld "$DIR/run/slurmctld.pid"
  fi
  if ! alive "$DIR/run/slurmctld.pid"; then
    /usr/sbin/slurmctld -f "$CONF"
    log "slurmctld started"
  fi
  if ! alive "$DIR/run/slurmd.pid"; then
    /usr/sbin/slurmd -f "$CONF"
    log "slurmd started"
  fi
}

wait_idle() {
  local state="" i
  for i in $(seq 1 60); do
    state=$(sinfo -h -N -n "$HOST" -o %t 2>/dev/null | head -1 || true)
    case $state in
      idle | mix | alloc) log "node $HOST $state, partition $PARTITION up (SLURM_CONF=$CONF)"; return 0 ;;
      down* | drain* | drng*)
        scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 1
  done
  sinfo >&2 || true
  die "node $HOST not idle after 60 s (state '$state'); see $DIR/log/"
}

stop_pidfile() { # stop_pidfile <name> <pid file>
  if alive "$2"; then
    local pid
    pid=$(cat "$2")
    kill "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    log "$1 stopped"
  fi
  return 0
}

case ${1:-} in
  start)
    need_root
    install_packages
    write_config
    start_munge
    start_daemons
    wait_idle
    ;;
  stop)
    need_root
    stop_pidfile slurmd "$DIR/run/slurmd.pid"
    stop_pidfile slurmctld "$DIR/run/slurmctld.pid"
    if [[ -f $DIR/run/munged.ours ]]; then
      stop_pidfile munged /run/munge/munged.pid
      rm -f "$DIR/run/munged.ours"
    fi
    if [[ $(readlink "$SYSTEM_CONF" || true) == "$CONF" ]]; then
      rm -f "$SYSTEM_CONF"
    fi
    ;;
  status)
    alive "$DIR/run/slurmctld.pid" || { log "not running"; exit 1; }
    sinfo
    squeue
    ;;
  env)
    echo "export SLURM_CONF=$CONF"
    ;;
  *)
    echo "usage: $0 start|stop|status|env" >&2
    exit 2
    ;;
esac
