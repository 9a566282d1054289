#!/usr/bin/env bash
# Train fimjax on a Cloud TPU VM slice (one host or a multi-host pod) with gcloud.
#
#   launch/tpu_pod.sh [ACTION] --name NAME --zone ZONE [flags] [--config.x=VALUE ...]
#
# ACTION (default: up; each can also be given as a flag, e.g. --logs, --stop, --delete):
#   up       create the slice if it does not exist (reuse it if it does), install, start
#   create   only create the slice (or reuse it)
# Before it creates a slice, up/create compile the config for that slice on this machine
# (`python -m fimjax.fit --topology`, needs fimjax with libtpu here) and refuse a config that
# does not fit the chips' memory; --skip-fit-check skips that.
#   install  clone/update fimjax and install it with the `tpu` extra on every worker
#   start    start training on every worker (in the background, with nohup; ssh returns)
#   logs     tail the training log of one worker (--worker, default 0)
#   status   the slice's state and, on every worker, whether training runs
#   stop     send SIGTERM to training on every worker (fimjax saves a checkpoint and exits)
#   delete   delete the slice (the bucket workdir is kept)
#
# Every worker runs the same command, `python -m fimjax.main --config CONFIG --workdir WORKDIR
# [overrides]`; fimjax.main detects the pod and calls jax.distributed.initialize() itself.
# The workdir must be a bucket path (gs://...) that every worker can write.
# Run `launch/tpu_pod.sh --help` for all flags; see launch/README.md for a walk-through.
set -euo pipefail
# Works with bash 3.2 (macOS): empty arrays are expanded as ${a[@]+"${a[@]}"}.

FIMJAX_REPO="${FIMJAX_REPO:-https://github.com/fimjax/fimjax}"
FIMJAX_REF="${FIMJAX_REF:-main}"
PROG="$(basename "$0")"

usage() {
  cat <<EOF
Usage: $PROG [ACTION] --name NAME --zone ZONE [flags] [--config.x=VALUE ...] [-- EXTRA_ARGS]

Actions: up (default), create, install, start, logs, status, stop, delete.
Each action can also be given as a flag: --up, --create, --install, --start, --logs,
--status, --stop, --delete.

Slice:
  --name NAME          TPU VM name (required)
  --zone ZONE          zone, e.g. us-central2-b, us-west4-a (required)
  --project PROJECT    Google Cloud project (default: gcloud's configured project)
  --type TYPE          accelerator type, e.g. v4-32, v5litepod-16, v5p-8, v6e-8
                       (required by up and create)
  --version VERSION    TPU runtime (default from --type: v2-alpha-tpuv6e, v2-alpha-tpuv5-lite,
                       v2-alpha-tpuv5, or tpu-ubuntu2204-base for v2/v3/v4)
  --spot               create a Spot VM (cheaper, can be preempted at any time)
  --create-flag FLAG   extra flag for 'gcloud compute tpus tpu-vm create' (repeatable),
                       e.g. --create-flag=--service-account=SA@PROJECT.iam.gserviceaccount.com
  --skip-fit-check     create the slice without first checking that --config fits its chips
                       (the check runs \$FIMJAX_PYTHON, default python3, -m fimjax.fit)

Install:
  --repo URL           git URL to install from (default: \$FIMJAX_REPO = $FIMJAX_REPO)
  --ref REF            branch, tag or commit (default: \$FIMJAX_REF = $FIMJAX_REF)
  --pip PACKAGE        extra package to install into the workers' venv (repeatable)

Training:
  --config PATH        config file, e.g. configs/large.py (a path in the repository, or a local
                       file, which is copied to every worker) (required by up and start)
  --workdir gs://...   bucket path for checkpoints and logs (required by up and start)
  --local-workdir-ok   allow a workdir that is not gs:// (single-host slices only)
  --env KEY=VALUE      environment variable for the training processes (repeatable)
  --config.x=VALUE     any config override, passed through to fimjax.main
  -- ARGS              everything after -- is passed through to fimjax.main

Logs / stop:
  --worker N|all       worker for 'logs' (default 0)
  --lines N            log lines to show first (default 100)
  --no-follow          print the log and return instead of following it
  --timeout SECONDS    how long 'stop' waits for each process to save and exit (default 300)
  --force              'stop': SIGKILL what is still running after --timeout

Other:
  --dry-run            print the gcloud commands instead of running them
  --yes                'delete' without gcloud's confirmation prompt
  -h, --help           this help

Examples:
  $PROG --name fim-v4 --zone us-central2-b --type v4-32 \\
      --config configs/large.py --workdir gs://my-bucket/runs/large --config.train.steps=20000
  $PROG logs --name fim-v4 --zone us-central2-b
  $PROG stop --name fim-v4 --zone us-central2-b
  $PROG delete --name fim-v4 --zone us-central2-b
EOF
}

die() {
  echo "$PROG: error: $*" >&2
  echo "Run '$PROG --help' for usage." >&2
  exit 2
}

# Quote one word for a POSIX shell, leaving plain words as they are (for readable output).
quote() {
  local s="$1"
  if [[ -n "$s" && "$s" =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then
    printf '%s' "$s"
  else
    printf "'%s'" "${s//\'/\'\\\'\'}"
  fi
}

quote_all() {
  local out="" w
  for w in "$@"; do
    out+="${out:+ }$(quote "$w")"
  done
  printf '%s' "$out"
}

# ---------------------------------------------------------------------------------------------
# Arguments.
ACTION=""
NAME="" ZONE="" PROJECT="" TYPE="" VERSION="" SPOT=0
CONFIG="" WORKDIR="" LOCAL_WORKDIR_OK=0
REPO="$FIMJAX_REPO" REF="$FIMJAX_REF"
DRY_RUN=0 YES=0 FOLLOW=1 FORCE=0 LINES=100 STOP_TIMEOUT=300 LOG_WORKER=0 FIT_CHECK=1
CREATE_FLAGS=() PIP_EXTRA=() ENVS=() PASS=()

set_action() {
  if [[ -n "$ACTION" && "$ACTION" != "$1" ]]; then
    die "two actions given: '$ACTION' and '$1'"
  fi
  ACTION="$1"
}

# Value of a flag given as --flag=VALUE or --flag VALUE; sets SHIFT to the words consumed.
flag_value() {
  local flag="$1" word="$2"
  if [[ "$word" == *=* ]]; then
    VALUE="${word#*=}"
    SHIFT=1
  elif [[ $# -ge 3 ]]; then
    VALUE="$3"
    SHIFT=2
  else
    die "$flag needs a value"
  fi
}

while [[ $# -gt 0 ]]; do
  arg="$1"
  SHIFT=1
  case "$arg" in
    -h | --help) usage; exit 0 ;;
    up | create | install | start | logs | status | stop | delete) set_action "$arg" ;;
    --up | --create | --install | --start | --logs | --status | --stop | --delete)
      set_action "${arg#--}" ;;
    --name | --name=*) flag_value --name "$@"; NAME="$VALUE" ;;
    --zone | --zone=*) flag_value --zone "$@"; ZONE="$VALUE" ;;
    --project | --project=*) flag_value --project "$@"; PROJECT="$VALUE" ;;
    --type | --type=* | --accelerator-type | --accelerator-type=*)
      flag_value --type "$@"; TYPE="$VALUE" ;;
    --version | --version=*) flag_value --version "$@"; VERSION="$VALUE" ;;
    --spot) SPOT=1 ;;
    --skip-fit-check) FIT_CHECK=0 ;;
    --create-flag | --create-flag=*) flag_value --create-flag "$@"; CREATE_FLAGS+=("$VALUE") ;;
    --repo | --repo=*) flag_value --repo "$@"; REPO="$VALUE" ;;
    --ref | --ref=*) flag_value --ref "$@"; REF="$VALUE" ;;
    --pip | --pip=*) flag_value --pip "$@"; PIP_EXTRA+=("$VALUE") ;;
    --config | --config=*) flag_value --config "$@"; CONFIG="$VALUE" ;;
    --config.*) PASS+=("$arg") ;;
    --workdir | --workdir=*) flag_value --workdir "$@"; WORKDIR="$VALUE" ;;
    --local-workdir-ok) LOCAL_WORKDIR_OK=1 ;;
    --env | --env=*)
      flag_value --env "$@"
      [[ "$VALUE" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env wants KEY=VALUE, got '$VALUE'"
      ENVS+=("$VALUE") ;;
    --worker | --worker=*) flag_value --worker "$@"; LOG_WORKER="$VALUE" ;;
    --lines | --lines=*) flag_value --lines "$@"; LINES="$VALUE" ;;
    --no-follow) FOLLOW=0 ;;
    --timeout | --timeout=*) flag_value --timeout "$@"; STOP_TIMEOUT="$VALUE" ;;
    --force) FORCE=1 ;;
    --dry-run) DRY_RUN=1 ;;
    --yes | -y) YES=1 ;;
    --) shift; PASS+=("$@"); break ;;
    *) die "unknown argument '$arg'" ;;
  esac
  shift "$SHIFT"
done
ACTION="${ACTION:-up}"

[[ -n "$NAME" ]] || die "--name is required (the TPU VM's name, e.g. --name fimjax-v4-32)"
[[ -n "$ZONE" ]] || die "--zone is required (e.g. --zone us-central2-b)"
[[ "$LINES" =~ ^[0-9]+$ ]] || die "--lines wants a number, got '$LINES'"
[[ "$STOP_TIMEOUT" =~ ^[0-9]+$ ]] || die "--timeout wants seconds, got '$STOP_TIMEOUT'"
[[ "$LOG_WORKER" =~ ^([0-9]+|all)$ ]] || die "--worker wants a number or 'all', got '$LOG_WORKER'"

if [[ "$ACTION" == up || "$ACTION" == create ]]; then
  [[ -n "$TYPE" ]] || die "--type is required to create a slice (e.g. --type v4-32, v5litepod-16)"
  if [[ -z "$VERSION" ]]; then
    case "$TYPE" in
      v6e-*) VERSION="v2-alpha-tpuv6e" ;;
      v5litepod-* | v5e-*) VERSION="v2-alpha-tpuv5-lite" ;;
      v5p-*) VERSION="v2-alpha-tpuv5" ;;
      v2-* | v3-* | v4-*) VERSION="tpu-ubuntu2204-base" ;;
      *) die "no default runtime for --type $TYPE; pass --version (gcloud compute tpus tpu-vm versions list --zone $ZONE)" ;;
    esac
  fi
fi
if [[ "$ACTION" == up || "$ACTION" == start ]]; then
  [[ -n "$CONFIG" ]] || die "--config is required (e.g. --config configs/large.py)"
  [[ -n "$WORKDIR" ]] || die "--workdir is required (a bucket path, e.g. --workdir gs://my-bucket/runs/large)"
  if [[ "$WORKDIR" != gs://* && "$LOCAL_WORKDIR_OK" != 1 ]]; then
    die "--workdir must be a gs:// bucket path that every worker can write (got '$WORKDIR'); add --local-workdir-ok to allow a local path on a single-host slice"
  fi
fi

# ---------------------------------------------------------------------------------------------
# Running gcloud.
GLOBAL_FLAGS=("--zone=$ZONE")
if [[ -n "$PROJECT" ]]; then
  GLOBAL_FLAGS+=("--project=$PROJECT")
fi

run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "+ $(quote_all "$@")"
  else
    echo "+ $(quote_all "$@")" >&2
    "$@"
  fi
}

tpu() {
  local sub="$1"
  shift
  run gcloud compute tpus tpu-vm "$sub" "$NAME" "${GLOBAL_FLAGS[@]}" "$@"
}

# Run a shell script on workers ($1: a worker index, a list, or "all").
on_workers() {
  tpu ssh "--worker=$1" "--command=$2"
}

note() {
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "# $*"
  else
    echo "$PROG: $*" >&2
  fi
}

# Remote layout (in each worker's home directory); expanded by the workers' shell.
# shellcheck disable=SC2016
R_HOME='$HOME'
R_SRC="$R_HOME/fimjax"
R_VENV="$R_HOME/fimjax-venv"
R_CONFIGS="$R_HOME/fimjax-configs"
R_LOG="$R_HOME/fimjax-run.log"
R_PID="$R_HOME/fimjax-run.pid"

# ---------------------------------------------------------------------------------------------
# Will the config fit? The slice's topology for `fimjax.fit --topology`: --type counts chips
# (v5litepod, v5e, v6e) or TensorCores, two per chip (v4, v5p).
slice_topology() {
  local gen="${TYPE%%-*}" n="${TYPE##*-}" shape=""
  [[ "$n" =~ ^[0-9]+$ ]] || return 1
  case "$gen" in
    v5litepod | v5e | v6e)
      case "$n" in
        1) shape=1x1 ;; 4) shape=2x2 ;; 8) shape=2x4 ;; 16) shape=4x4 ;; 32) shape=4x8 ;;
        64) shape=8x8 ;; 128) shape=8x16 ;; 256) shape=16x16 ;; *) return 1 ;;
      esac
      [[ "$gen" == v6e ]] || gen=v5e ;;
    v4 | v5p)
      case "$((n / 2))" in
        4) shape=2x2x1 ;; 8) shape=2x2x2 ;; 16) shape=2x2x4 ;; 32) shape=2x4x4 ;;
        64) shape=4x4x4 ;; 128) shape=4x4x8 ;; 256) shape=4x8x8 ;; 512) shape=8x8x8 ;;
        *) return 1 ;;
      esac ;;
    *) return 1 ;;
  esac
  echo "$gen:$shape"
}

# Compile the config for the slice here and refuse to create one it does not fit.
fit_check() {
  if [[ "$FIT_CHECK" != 1 || -z "$CONFIG" ]]; then
    return 0
  fi
  local topo py="${FIMJAX_PYTHON:-python3}" overrides=() a rc=0
  topo="$(slice_topology)" || { note "no fit check for --type $TYPE (unknown topology)"; return 0; }
  for a in ${PASS[@]+"${PASS[@]}"}; do
    if [[ "$a" == --config.* ]]; then
      overrides+=("$a")
    fi
  done
  local cmd=("$py" -m fimjax.fit --config "$CONFIG" --topology "$topo" --check
             ${overrides[@]+"${overrides[@]}"})
  if [[ "$DRY_RUN" == 1 ]]; then
    note "before creating, check that the config fits the slice's chips:"
    echo "+ $(quote_all "${cmd[@]}")"
    return 0
  fi
  note "checking that $CONFIG fits $TYPE ($topo): compiling its train step here"
  echo "+ $(quote_all "${cmd[@]}")" >&2
  JAX_PLATFORMS=cpu "${cmd[@]}" >&2 || rc=$?
  if [[ "$rc" == 3 ]]; then
    echo "$PROG: $CONFIG does not fit the memory of $TYPE's chips (above): not creating '$NAME';" \
      "add --config.model.remat=True, more --config.train.microbatches, --config.mesh.fsdp=-1," \
      "or a larger --type (--skip-fit-check creates it anyway)" >&2
    exit 1
  elif [[ "$rc" != 0 ]]; then
    echo "$PROG: the fit check could not run (above): install fimjax with libtpu here" \
      "(pip install -e '.[dev]'; FIMJAX_PYTHON picks the python) or pass --skip-fit-check" >&2
    exit 1
  fi
}

# ---------------------------------------------------------------------------------------------
# Actions.
do_create() {
  local create_args=("--accelerator-type=$TYPE" "--version=$VERSION")
  if [[ "$SPOT" == 1 ]]; then
    create_args+=(--spot)
  fi
  create_args+=(${CREATE_FLAGS[@]+"${CREATE_FLAGS[@]}"})
  if [[ "$DRY_RUN" == 1 ]]; then
    note "the slice is reused when 'describe' finds it; otherwise it is created:"
    tpu describe "--format=value(state)"
    fit_check
    tpu create "${create_args[@]}"
    return
  fi
  local state err
  err="$(mktemp)"
  if state="$(gcloud compute tpus tpu-vm describe "$NAME" "${GLOBAL_FLAGS[@]}" \
      --format='value(state)' 2>"$err")"; then
    rm -f "$err"
    note "reusing TPU VM '$NAME' (state: $state)"
    case "$state" in
      READY) ;;
      STOPPED) tpu start ;;
      PREEMPTED | TERMINATED)
        echo "$PROG: '$NAME' is $state; delete it ('$PROG delete --name $NAME --zone $ZONE')" \
          "and run this command again: training resumes from the last checkpoint in the workdir" >&2
        exit 1 ;;
      *) note "'$NAME' is $state, not READY; the next steps fail until it is" ;;
    esac
  elif grep -qiE 'NOT_FOUND|not found' "$err"; then
    rm -f "$err"
    fit_check
    note "creating TPU VM '$NAME' ($TYPE, runtime $VERSION)"
    tpu create "${create_args[@]}"
  else
    cat "$err" >&2
    rm -f "$err"
    echo "$PROG: could not look up TPU VM '$NAME' (see gcloud's message above)" >&2
    exit 1
  fi
}

install_script() {
  local pip_extra=""
  if [[ ${#PIP_EXTRA[@]} -gt 0 ]]; then
    pip_extra=" $(quote_all "${PIP_EXTRA[@]}")"
  fi
  cat <<EOF
set -euo pipefail
export PATH="\$HOME/.local/bin:\$PATH"
command -v uv >/dev/null || curl -LsSf https://astral.sh/uv/install.sh | sh
[ -d "$R_SRC/.git" ] || git clone --quiet $(quote "$REPO") "$R_SRC"
git -C "$R_SRC" fetch --quiet origin $(quote "$REF")
git -C "$R_SRC" checkout --quiet --detach FETCH_HEAD
[ -x "$R_VENV/bin/python" ] || uv venv --quiet --python 3.12 "$R_VENV"
uv pip install --quiet --python "$R_VENV/bin/python" -e "$R_SRC[tpu]"$pip_extra
mkdir -p "$R_CONFIGS"
"$R_VENV/bin/python" -c 'import sys, jax, fimjax; print("fimjax ready: python", sys.version.split()[0], "jax", jax.__version__)'
EOF
}

do_install() {
  note "installing fimjax[tpu] from $REPO@$REF on every worker"
  on_workers all "$(install_script)"
}

# The config path as the workers see it; a local file outside configs/ is copied to them.
remote_config() {
  if [[ "$CONFIG" != configs/* && -f "$CONFIG" ]]; then
    local base
    base="$(basename "$CONFIG")"
    note "copying $CONFIG to every worker"
    run gcloud compute tpus tpu-vm scp "$CONFIG" "$NAME:fimjax-configs/$base" \
      "${GLOBAL_FLAGS[@]}" --worker=all
    CONFIG_ON_WORKER="\"$R_CONFIGS/\"$(quote "$base")"
  else
    CONFIG_ON_WORKER="$(quote "$CONFIG")"
  fi
}

start_script() {
  local train_cmd=(-m fimjax.main --config)
  local tail_args=(--workdir "$WORKDIR" ${PASS[@]+"${PASS[@]}"})
  local env_prefix=""
  if [[ ${#ENVS[@]} -gt 0 ]]; then
    env_prefix="env $(quote_all "${ENVS[@]}") "
  fi
  local cmd
  cmd="${env_prefix}\"$R_VENV/bin/python\" ${train_cmd[*]} $CONFIG_ON_WORKER $(quote_all "${tail_args[@]}")"
  cat <<EOF
set -euo pipefail
cd "$R_SRC"
if [ -f "$R_PID" ] && kill -0 "\$(cat "$R_PID")" 2>/dev/null; then
  echo "fimjax already runs on \$(hostname) (pid \$(cat "$R_PID")); stop it first" >&2; exit 1
fi
echo "=== \$(date -u +%Y-%m-%dT%H:%M:%SZ) start" >> "$R_LOG"
nohup $cmd >> "$R_LOG" 2>&1 < /dev/null &
echo \$! > "$R_PID"
echo "fimjax started on \$(hostname) (pid \$!), log: ~/fimjax-run.log"
EOF
}

do_start() {
  remote_config
  note "starting training on every worker (workdir $WORKDIR)"
  on_workers all "$(start_script)"
  note "watch:  $PROG logs --name $NAME --zone $ZONE"
  note "stop:   $PROG stop --name $NAME --zone $ZONE   (saves a checkpoint; start again to resume)"
}

do_logs() {
  local follow="-F"
  if [[ "$FOLLOW" == 0 ]]; then
    follow=""
  fi
  on_workers "$LOG_WORKER" "tail -n $LINES $follow \"$R_LOG\""
}

do_status() {
  tpu describe "--format=value(state,acceleratorType,runtimeVersion)"
  on_workers all "if [ -f \"$R_PID\" ] && kill -0 \"\$(cat \"$R_PID\")\" 2>/dev/null; then \
echo \"\$(hostname): running (pid \$(cat \"$R_PID\")): \$(tail -n 1 \"$R_LOG\")\"; \
else echo \"\$(hostname): not running\"; fi"
}

stop_script() {
  cat <<EOF
if ! { [ -f "$R_PID" ] && kill -0 "\$(cat "$R_PID")" 2>/dev/null; }; then
  echo "\$(hostname): not running"; exit 0
fi
pid="\$(cat "$R_PID")"
kill -TERM "\$pid"
echo "\$(hostname): sent SIGTERM to \$pid, waiting up to ${STOP_TIMEOUT}s for the checkpoint"
for _ in \$(seq $STOP_TIMEOUT); do kill -0 "\$pid" 2>/dev/null || break; sleep 1; done
if kill -0 "\$pid" 2>/dev/null; then
  if [ $FORCE = 1 ]; then kill -KILL "\$pid"; echo "\$(hostname): killed \$pid"
  else echo "\$(hostname): \$pid still running (add --force to SIGKILL it)" >&2; exit 1; fi
else
  echo "\$(hostname): stopped"
fi
rm -f "$R_PID"
EOF
}

do_stop() {
  note "stopping training on every worker"
  on_workers all "$(stop_script)"
}

do_delete() {
  local args=()
  if [[ "$YES" == 1 ]]; then
    args+=(--quiet)
  fi
  note "deleting TPU VM '$NAME' (the workdir in the bucket is kept)"
  tpu delete ${args[@]+"${args[@]}"}
}

if [[ "$DRY_RUN" != 1 ]] && ! command -v gcloud >/dev/null; then
  die "gcloud not found: install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install)"
fi

if [[ "$DRY_RUN" == 1 ]]; then
  note "dry run: the commands below are printed, not executed"
fi
case "$ACTION" in
  up) do_create; do_install; do_start ;;
  create) do_create ;;
  install) do_install ;;
  start) do_start ;;
  logs) do_logs ;;
  status) do_status ;;
  stop) do_stop ;;
  delete) do_delete ;;
esac
