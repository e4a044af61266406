#!/usr/bin/env bash
# Entry point of the Jetson image (deploy/jetson/Dockerfile).
#
#   run [ARGS...]   build the pipeline's TensorRT engine if the cache volume has none
#                   for this model, JetPack, GPU and precision (minutes, once; a
#                   progress display goes to the log), then run the pipeline. ARGS go
#                   to `streamer run` (e.g. --max-frames 100).
#   anything else   passed to the streamer command (validate, engine list, ...).
#
# Environment: STREAMER_PIPELINE (default /config/pipeline.yaml), STREAMER_ENGINE_CACHE
# (the engine volume), and whatever the pipeline's ${env:...} use (CAMERA_URL, ...).
set -euo pipefail

pipeline="${STREAMER_PIPELINE:-/config/pipeline.yaml}"

if [ "${1:-run}" != "run" ]; then
  exec streamer "$@"
fi
if [ "$#" -gt 0 ]; then
  shift
fi
if [ ! -f "$pipeline" ]; then
  echo "error: no pipeline at $pipeline: mount a folder with pipeline.yaml at /config" \
    "(or set STREAMER_PIPELINE)" >&2
  exit 2
fi
echo "streamer: TensorRT engine for $pipeline (cache: ${STREAMER_ENGINE_CACHE:-default})"
streamer engine build --only-tensorrt "$pipeline"
exec streamer run "$pipeline" --no-progress "$@"
