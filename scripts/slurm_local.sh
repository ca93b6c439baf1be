#!/usr/bin/env bash
# A single-node Slurm on this machine, for trying (and testing) executor=slurm.
#
#   scripts/slurm_local.sh start    install what is missing (apt-get), write the configs,
#                                   start MariaDB, munged, slurmdbd, slurmctld, slurmd,
#                                   wait until the node is idle
#   scripts/slurm_local.sh stop     cancel this cluster's jobs, stop exactly the processes
#                                   `start` started (PIDs in $STATE/run/*.pid)
#   scripts/slurm_local.sh status   which daemons run; sinfo; squeue
#   scripts/slurm_local.sh env      print `export SLURM_CONF=...` (eval it to use sbatch,
#                                   sacct, squeue and submitit against this cluster)
#
# Needs root and Debian/Ubuntu packages (slurm-wlm, slurmdbd, munge, mariadb-server).
# There is no systemd here: every daemon is started by hand, in the foreground of its own
# background process, and its PID recorded. Accounting (slurmdbd + MariaDB) is on because
# submitit reads job states with sacct: without it every state is UNKNOWN and a job
# killed from outside is waited for forever. Cgroups are not used
# (proctrack/linuxproc, task/none); KillWait is 2 s so a cancelled job frees its CPUs.
#
# Environment: XINTERP_SLURM_STATE (default /tmp/xinterp-slurm) holds configs, logs,
# spool, database and PID files; XINTERP_SLURM_PORT (default 16817) is the first of four
# ports (slurmctld, slurmd, slurmdbd, MariaDB), all on this machine only; jobs started by
# slurmd run at XINTERP_SLURM_NICE (default 19) so they never starve the machine.
set -euo pipefail

STATE=${XINTERP_SLURM_STATE:-/tmp/xinterp-slurm}
PORT=${XINTERP_SLURM_PORT:-16817}
NICE=${XINTERP_SLURM_NICE:-19}
CTLD_PORT=$PORT
SLURMD_PORT=$((PORT + 1))
DBD_PORT=$((PORT + 2))
DB_PORT=$((PORT + 3))
CLUSTER=xinterp
ETC=$STATE/etc RUN=$STATE/run LOG=$STATE/log
export SLURM_CONF=$ETC/slurm.conf
# Slurm's clients (sacctmgr above all) ask munged on its default socket, whatever
# AuthInfo says, so munged listens there: one munged a machine.
MUNGE_SOCKET=/run/munge/munge.socket.2
DAEMONS=(mariadbd munged slurmdbd slurmctld slurmd)  # start order; stop is the reverse

say() { echo "slurm_local: $*"; }
die() { echo "slurm_local: error: $*" >&2; exit 1; }

alive() {  # alive NAME: the recorded PID runs and is still that program
  local pidfile=$RUN/$1.pid pid
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ -r /proc/$pid/cmdline ]] || return 1
  local cmdline
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$1"* ]]
}

launch() {  # launch NAME COMMAND...: start in the background, record its PID
  local name=$1; shift
  nice -n "$NICE" "$@" >"$LOG/$name.out" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

wait_for() {  # wait_for SECONDS DAEMON COMMAND...: poll until COMMAND succeeds
  local limit=$1 what=$2 t0=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    # (kill -0, not alive: right after the fork the child is not yet exec'd)
    kill -0 "$(<"$RUN/$what.pid")" 2>/dev/null || die "$what exited while starting (see $LOG/$what.out)"
    if (( SECONDS - t0 >= limit )); then
      die "$what not ready after ${limit} s (logs: $LOG)"
    fi
    sleep 0.2
  done
}

install_packages() {
  local missing=()
  for exe in slurmctld slurmd slurmdbd sbatch sacct munged mariadbd mariadb-install-db; do
    command -v "$exe" >/dev/null || PATH=$PATH:/usr/sbin:/sbin command -v "$exe" >/dev/null \
      || missing+=("$exe")
  done
  (( ${#missing[@]} == 0 )) && return 0
  [[ $(id -u) == 0 ]] || die "missing ${missing[*]}; run as root to install them"
  say "installing slurm-wlm, slurmdbd, munge, mariadb-server (missing: ${missing[*]})"
  apt-get update -qq >"$LOG/apt.out" 2>&1 || die "apt-get update failed (see $LOG/apt.out)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurm-wlm slurmdbd munge mariadb-server mariadb-client >>"$LOG/apt.out" 2>&1 \
    || die "apt-get install failed (see $LOG/apt.out)"
}

write_configs() {
  local host mem cpus
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  cat >"$ETC/slurm.conf" <<EOF
# Written by scripts/slurm_local.sh: one node, this machine.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$RUN/slurmctld.daemon.pid
SlurmdPidFile=$RUN/slurmd.daemon.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
JobCompType=jobcomp/none
KillWait=2
MinJobAge=30
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$ETC/slurmdbd.conf" <<EOF
# Written by scripts/slurm_local.sh.
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
AuthType=auth/munge
PidFile=$RUN/slurmdbd.daemon.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=xinterp
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$ETC/slurmdbd.conf"
}

start_mariadb() {
  if [[ ! -d $STATE/mysql/mysql ]]; then
    mkdir -p "$STATE/mysql"
    chown mysql:mysql "$STATE/mysql"
    mariadb-install-db --user=mysql --datadir="$STATE/mysql" --skip-test-db \
      --auth-root-authentication-method=socket >"$LOG/mariadb-install.out" 2>&1 \
      || die "mariadb-install-db failed (see $LOG/mariadb-install.out)"
  fi
  mkdir -p "$STATE/mysql-run"
  chown mysql:mysql "$STATE/mysql-run"
  launch mariadbd mariadbd --no-defaults --user=mysql --datadir="$STATE/mysql" \
    --socket="$STATE/mysql-run/mysqld.sock" --pid-file="$STATE/mysql-run/mariadbd.pid" \
    --bind-address=127.0.0.1 --port="$DB_PORT" --skip-name-resolve \
    --log-error="$LOG/mariadbd.log" --innodb-buffer-pool-size=64M
  wait_for 60 mariadbd mariadb --no-defaults --socket="$STATE/mysql-run/mysqld.sock" -u root -e "SELECT 1"
  mariadb --no-defaults --socket="$STATE/mysql-run/mysqld.sock" -u root <<'EOF'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'xinterp';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
EOF
}

start_munged() {
  mkdir -p "$STATE/munge" "${MUNGE_SOCKET%/*}"
  chown munge:munge "$STATE/munge" "${MUNGE_SOCKET%/*}"
  chmod 0755 "$STATE/munge"
  if [[ ! -s $STATE/munge/munge.key ]]; then
    dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
    chown munge:munge "$STATE/munge/munge.key"
    chmod 0400 "$STATE/munge/munge.key"
  fi
  # setpriv execs munged as user munge, so the recorded PID is munged's own.
  launch munged setpriv --reuid=munge --regid=munge --init-groups \
    munged --foreground --force --key-file="$STATE/munge/munge.key" \
    --socket="$MUNGE_SOCKET" --pid-file="$STATE/munge/munged.pid" \
    --log-file="$STATE/munge/munged.log" --seed-file="$STATE/munge/munged.seed"
  wait_for 30 munged munge -S "$MUNGE_SOCKET" -n
}

start() {
  mkdir -p "$STATE" "$ETC" "$RUN" "$LOG" "$STATE/spool/ctld" "$STATE/spool/d"
  local running=0
  for d in "${DAEMONS[@]}"; do alive "$d" && running=$((running + 1)); done
  if (( running == ${#DAEMONS[@]} )); then
    say "already running (state: $STATE)"; return 0
  fi
  (( running == 0 )) || { say "some daemons run, some not: restarting"; stop; }
  local t0=$SECONDS
  # A start that fails half-way stops what it had started, and shows the logs' tails.
  trap 'echo "slurm_local: start failed; log tails:" >&2; tail -n 5 "$LOG"/*.log "$LOG"/*.out >&2 2>/dev/null || true; stop' EXIT
  install_packages
  write_configs
  start_mariadb
  start_munged
  # slurmdbd reads slurmdbd.conf from the folder of $SLURM_CONF.
  launch slurmdbd slurmdbd -D
  wait_for 60 slurmdbd sacctmgr -n list cluster
  sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
  launch slurmctld slurmctld -D -i -f "$SLURM_CONF"
  wait_for 60 slurmctld scontrol ping
  launch slurmd slurmd -D -f "$SLURM_CONF"
  wait_for 60 slurmd bash -c "sinfo -h -o %t | grep -qx idle"
  say "Slurm is up in $((SECONDS - t0)) s: cluster $CLUSTER, node $(hostname -s), $(nproc) CPUs"
  say "use it with: export SLURM_CONF=$SLURM_CONF"
  trap - EXIT
}

stop() {
  if alive slurmctld; then  # no job outlives the cluster
    scancel --full --quiet -M "$CLUSTER" --user=root 2>/dev/null || true
    local t0=$SECONDS
    while [[ -n $(squeue -h -o %i 2>/dev/null) ]] && (( SECONDS - t0 < 10 )); do sleep 0.5; done
  fi
  for (( i = ${#DAEMONS[@]} - 1; i >= 0; i-- )); do
    local d=${DAEMONS[i]} pid
    if alive "$d"; then
      pid=$(<"$RUN/$d.pid")
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
      say "stopped $d (pid $pid)"
    fi
    rm -f "$RUN/$d.pid"
  done
}

status() {
  local up=0
  for d in "${DAEMONS[@]}"; do
    if alive "$d"; then echo "$d: running (pid $(<"$RUN/$d.pid"))"; up=$((up + 1))
    else echo "$d: not running"; fi
  done
  if alive slurmctld; then sinfo; squeue; fi
  (( up == ${#DAEMONS[@]} ))
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "export SLURM_CONF=$SLURM_CONF" ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
