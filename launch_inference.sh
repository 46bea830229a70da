#!/usr/bin/env bash
# Runs PaliGemma on a picture, as the original PyTorch launch_inference.sh did.
# Every setting can be overridden from the environment, for example:
#   MODEL_PATH=~/models/paligemma-3b-pt-224 PROMPT="caption en" ./launch_inference.sh
# With nothing set it runs the embedded demo: a tiny checkpoint with RANDOM weights.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
demo_model="$here/tests/fixtures/golden/models/tiny-paligemma-224"

MODEL_PATH="${MODEL_PATH:-$demo_model}"
PROMPT="${PROMPT:-caption en}"
IMAGE_FILE_PATH="${IMAGE_FILE_PATH:-$here/test_images/chelsea.png}"
# The demo model's greedy answer is a run of newlines: 20 of them make the point.
if [ "$MODEL_PATH" = "$demo_model" ]; then default_tokens=20; else default_tokens=100; fi
MAX_TOKENS_TO_GENERATE="${MAX_TOKENS_TO_GENERATE:-$default_tokens}"
TEMPERATURE="${TEMPERATURE:-0.8}"
TOP_P="${TOP_P:-0.9}"
DO_SAMPLE="${DO_SAMPLE:-False}"
ONLY_CPU="${ONLY_CPU:-False}"

# Build the CLI on first use, and again whenever a source file is newer than the build.
cli="$here/artifacts/cli/paligemma.dll"
if [ ! -f "$cli" ] || [ -n "$(find "$here/src" "$here/native" -name '*.cs' -newer "$cli" -print -quit)" ]; then
    echo "building the paligemma CLI (first run only)..." >&2
    dotnet build "$here/src/PaliGemma.Cli/PaliGemma.Cli.csproj" -c Release -o "$here/artifacts/cli" -v quiet -nologo >&2
fi

extra=()
if [ "$MODEL_PATH" = "$demo_model" ]; then
    cat >&2 <<'NOTE'
== DEMO ==========================================================================
This runs tests/fixtures/golden/models/tiny-paligemma-224: a tiny PaliGemma with
RANDOM weights, kept in the repository so the demo needs no download. Its text is
meaningless; the JSON below shows what the pipeline computed (token ids, timings).
For real answers, download a PaliGemma checkpoint such as google/paligemma-3b-pt-224
and run:  MODEL_PATH=/path/to/paligemma-3b-pt-224 ./launch_inference.sh
==================================================================================
NOTE
    extra+=(--json)
fi

exec dotnet "$cli" run \
    --model_path "$MODEL_PATH" \
    --prompt "$PROMPT" \
    --image_file_path "$IMAGE_FILE_PATH" \
    --max_tokens_to_generate "$MAX_TOKENS_TO_GENERATE" \
    --temperature "$TEMPERATURE" \
    --top_p "$TOP_P" \
    --do_sample "$DO_SAMPLE" \
    --only_cpu "$ONLY_CPU" \
    "${extra[@]}" "$@"
