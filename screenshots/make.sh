#!/usr/bin/env bash
# Regenerates the PNGs in screenshots/: runs `agentdeck demo` in a real terminal (tmux) at
# 120x40 and 160x48, in the dark and light themes, drives it with keys, captures the queue,
# a request's detail, the traces pane and the metrics pane, and renders each capture to PNG.
#
#   bash screenshots/make.sh            # all of them
#   SHOT_WAIT=15 bash screenshots/make.sh   # let the demo's traffic run longer first
#   SHOT_BIN=target/debug/agentdeck bash screenshots/make.sh   # no release build
set -euo pipefail
cd "$(dirname "$0")/.."
out=screenshots
wait_secs=${SHOT_WAIT:-6}

need_apt=()
command -v tmux >/dev/null || need_apt+=(tmux)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf ] || need_apt+=(fonts-dejavu-core)
[ -f /usr/share/fonts/truetype/freefont/FreeSerif.ttf ] || need_apt+=(fonts-freefont-ttf)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
py=target/py/bin/python
if ! "$py" -c 'import PIL, fontTools' 2>/dev/null; then
  python3 -m venv target/py && target/py/bin/pip install -q pillow fonttools
fi
# SHOT_BIN=path uses an already built binary (e.g. target/debug/agentdeck) instead.
if [ -n "${SHOT_BIN:-}" ]; then
  bin=$(realpath "$SHOT_BIN")
else
  cargo build --release --quiet
  bin=$PWD/target/release/agentdeck
fi

work=$(mktemp -d)
sock="agentdeck-shots-$$"
cleanup() { tmux -L "$sock" kill-server 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

wait_for() { # text, seconds
  local deadline=$((SECONDS + ${2:-15}))
  until tmux -L "$sock" capture-pane -p -t shot | grep -qF "$1"; do
    [ $SECONDS -lt $deadline ] || { echo "timed out waiting for: $1" >&2; tmux -L "$sock" capture-pane -p -t shot >&2; exit 1; }
    sleep 0.1
  done
}
shot() { # name cols rows bg fg
  sleep 0.4
  tmux -L "$sock" capture-pane -e -p -t shot > "$work/$1.ans"
  "$py" screenshots/ansi2png.py "$work/$1.ans" "$out/$1.png" --cols "$2" --rows "$3" --bg "$4" --fg "$5"
  echo "wrote $out/$1.png"
}

for theme in dark light; do
  if [ "$theme" = dark ]; then bg="#0d1117"; fg="#c9d1d9"; else bg="#ffffff"; fg="#1f2328"; fi
  for size in 120x40 160x48; do
    cols=${size%x*}; rows=${size#*x}
    rm -rf "$work/home"; mkdir -p "$work/home"
    tmux -L "$sock" kill-server 2>/dev/null || true
    tmux -L "$sock" new-session -d -s shot -x "$cols" -y "$rows" \
      "env -i PATH=$PATH TERM=xterm-256color HOME=$work/home XDG_CONFIG_HOME=$work/home/config \
       XDG_DATA_HOME=$work/home/data XDG_STATE_HOME=$work/home/state AGENTDECK_REVIEWER=alice@oncall \
       $bin --theme $theme demo --rate ${SHOT_RATE:-2} --path $work/home/demo-$theme-$size.db"
    wait_for "Approvals ·"
    sleep "$wait_secs"
    shot "queue-$theme-$size" "$cols" "$rows" "$bg" "$fg"
    # Decide two requests from the bottom of the queue (the least risky), so decisions, resumes
    # and continuations show in the other panes.
    tmux -L "$sock" send-keys -t shot G a; sleep 0.5; tmux -L "$sock" send-keys -t shot a
    wait_for "approved"
    tmux -L "$sock" send-keys -t shot G r; sleep 0.5; tmux -L "$sock" send-keys -t shot r
    wait_for "Reason to reject"
    tmux -L "$sock" send-keys -t shot -l "not during the freeze"
    tmux -L "$sock" send-keys -t shot Enter
    wait_for "rejected"
    sleep 2
    tmux -L "$sock" send-keys -t shot g Enter
    wait_for "Rationale"
    shot "detail-$theme-$size" "$cols" "$rows" "$bg" "$fg"
    # A key right after Esc would read as Alt-key: let the Esc land first.
    tmux -L "$sock" send-keys -t shot Escape
    sleep 0.3
    tmux -L "$sock" send-keys -t shot 2
    wait_for "sessions ·"
    # The oldest session (finished by now, resumed after its decision): its first invocation's
    # steps with kinds, durations, tokens and waterfall.
    tmux -L "$sock" send-keys -t shot G Enter; sleep 0.5; tmux -L "$sock" send-keys -t shot Enter
    wait_for "WATERFALL"
    shot "traces-$theme-$size" "$cols" "$rows" "$bg" "$fg"
    tmux -L "$sock" send-keys -t shot Escape; sleep 0.3
    tmux -L "$sock" send-keys -t shot Escape; sleep 0.3
    tmux -L "$sock" send-keys -t shot 3
    wait_for "Metrics ·"
    shot "metrics-$theme-$size" "$cols" "$rows" "$bg" "$fg"
    tmux -L "$sock" send-keys -t shot q
    for _ in $(seq 50); do tmux -L "$sock" has-session -t shot 2>/dev/null || break; sleep 0.1; done
  done
done
