#!/bin/sh
# A Chorus exec handler. The agent runs it with the task's payload (JSON) on stdin and takes
# what it prints on stdout as the task's result; a non-zero exit fails the task, with the
# tail of stderr as the reason. CHORUS_TASK_ID and CHORUS_TASK_KEY say which task this is.
#
# This one answers with the payload's SHA-256 and size. Wire it up in the agent's config (a
# relative path is taken from the config file's folder, as in examples/agent.json):
#   "handlers": {"checksum": {"exec": ["handlers/checksum.sh"]}}
set -eu
payload=$(cat)
if [ -z "$payload" ] || [ "$payload" = "null" ]; then
  echo "checksum: send something to checksum as the payload" >&2
  exit 2
fi
sum=$(printf '%s' "$payload" | sha256sum | cut -d' ' -f1)
bytes=$(printf '%s' "$payload" | wc -c)
printf '{"sha256":"%s","bytes":%d,"task":"%s"}\n' "$sum" "$bytes" "$CHORUS_TASK_ID"
