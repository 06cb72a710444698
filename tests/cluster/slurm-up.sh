#!/usr/bin/env bash
# A real single-node Slurm (slurmctld, slurmd, slurmdbd on MariaDB, munge) on this machine, for
# the cluster tests and for trying profiles/slurm by hand. Idempotent: exits at once when the
# cluster answers. Needs root and Debian's packages (installed here if missing).
#
# The node has fake GPUs: gres.conf maps gpu to character devices that exist everywhere
# (/dev/null, /dev/zero, /dev/full, /dev/urandom), so jobs get CUDA_VISIBLE_DEVICES and
# SLURM_JOB_GPUS, and sacct records gres/gpu in AllocTRES, exactly as on a GPU node.
# (A gres.conf with Count= only drains the node; File= on regular files gives no
# CUDA_VISIBLE_DEVICES.) Its CPUs are declared as CPUS (default 8) whatever the machine has,
# so that jobs sized like the demo's can run side by side on a 2-core CI machine. Its features,
# h100, a and b, let the tests submit constraint expressions such as h100&(a|b) and h100|a
# (Slurm refuses a constraint that names a feature no node has).
set -euo pipefail

CLUSTER=${EVALWATT_SLURM_CLUSTER:-evalwatt-ci}
ACCOUNT=${EVALWATT_SLURM_ACCOUNT:-evalwatt}
PARTITION=${EVALWATT_SLURM_PARTITION:-gpu}
CPUS=${EVALWATT_SLURM_CPUS:-8}
GPUS=4
DB_PASS=evalwatt-ci-only
HOST=$(hostname -s)

log() { echo "[slurm-up] $*" >&2; }

# Up, with this script's settings (a cluster started by an older version of it lacks some):
# then there is nothing to do.
if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)' \
   && sacctmgr -n show account "$ACCOUNT" 2>/dev/null | grep -q "$ACCOUNT" \
   && scontrol show config 2>/dev/null | grep -q 'AccountingStoreFlags *= *job_comment' \
   && scontrol show node "$HOST" 2>/dev/null | grep -q 'AvailableFeatures=h100,a,b'; then
  log "cluster $CLUSTER is up"; exit 0
fi
[ "$(id -u)" = 0 ] || { log "needs root (it installs and starts Slurm)"; exit 2; }

if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null \
   || ! command -v mariadbd >/dev/null; then
  log "installing slurm-wlm, slurmdbd, mariadb-server, munge"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    slurm-wlm slurmdbd mariadb-server munge >/dev/null
fi

MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=$CLUSTER
SlurmctldHost=$HOST
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
GresTypes=gpu
DefMemPerCPU=1024
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
AccountingStorageEnforce=associations
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
JobCompType=jobcomp/none
AccountingStoreFlags=job_comment
MinJobAge=3600
KillWait=10
InactiveLimit=0
ReturnToService=2
SchedulerParameters=sched_interval=2
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:$GPUS Feature=h100,a,b State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
cat > /etc/slurm/gres.conf <<CONF
NodeName=$HOST Name=gpu File=/dev/null
NodeName=$HOST Name=gpu File=/dev/zero
NodeName=$HOST Name=gpu File=/dev/full
NodeName=$HOST Name=gpu File=/dev/urandom
CONF
cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
CONF
chmod 600 /etc/slurm/slurmdbd.conf

log "starting munge and MariaDB"
chown munge:munge /run/munge
pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged
/etc/init.d/mariadb start >/dev/null
mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

log "starting slurmdbd, slurmctld, slurmd"
pkill -x slurmd || true; pkill -x slurmctld || true; pkill -x slurmdbd || true
sleep 1
slurmdbd
for _ in $(seq 60); do sacctmgr -n show cluster >/dev/null 2>&1 && break; sleep 0.5; done
sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" >/dev/null 2>&1 || true
sacctmgr -i add user root account="$ACCOUNT" cluster="$CLUSTER" >/dev/null 2>&1 || true
slurmctld
slurmd
for _ in $(seq 60); do
  state=$(sinfo -h -o %T 2>/dev/null || true)
  case "$state" in idle*|mixed*|allocated*) log "cluster $CLUSTER is up: $HOST $state"; exit 0;; esac
  sleep 0.5
done
log "the node did not come up: $(sinfo -h -o '%T %E' 2>&1)"
tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
