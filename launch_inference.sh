#!/usr/bin/env bash
# Runs PaliGemma on a picture, as the original PyTorch launch_inference.sh did.
# Every setting can be overridden from the environment, for example:
#   MODEL_PATH=~/models/paligemma-3b-pt-224 PROMPT="caption en" ./launch_inference.sh
# With nothing set it runs the embedded demo: a tiny PaliGemma trained on coloured shapes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
demo_model="$here/tests/fixtures/trained/tiny-paligemma-shapes-224"
demo=false
if [ -z "${MODEL_PATH:-}" ] && [ -z "${PROMPT:-}" ] && [ -z "${IMAGE_FILE_PATH:-}" ]; then demo=true; fi

MODEL_PATH="${MODEL_PATH:-$demo_model}"
PROMPT="${PROMPT:-caption en}"
IMAGE_FILE_PATH="${IMAGE_FILE_PATH:-$here/test_images/shapes-green-square.png}"
MAX_TOKENS_TO_GENERATE="${MAX_TOKENS_TO_GENERATE:-100}"
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

run() {
    dotnet "$cli" run \
        --model_path "$MODEL_PATH" \
        --image_file_path "$IMAGE_FILE_PATH" \
        --max_tokens_to_generate "$MAX_TOKENS_TO_GENERATE" \
        --temperature "$TEMPERATURE" \
        --top_p "$TOP_P" \
        --do_sample "$DO_SAMPLE" \
        --only_cpu "$ONLY_CPU" \
        "$@"
}

if ! $demo; then
    run --prompt "$PROMPT" "$@"
    exit
fi

cat >&2 <<'NOTE'
== DEMO ==========================================================================
tests/fixtures/trained/tiny-paligemma-shapes-224: a 1.7 M-parameter PaliGemma trained
on pictures of coloured shapes (see tests/fixtures/trained/README.md). It counts and
reads colours well, names shapes and places boxes only roughly. The picture is
test_images/shapes-green-square.png. For real answers, download a checkpoint such as
google/paligemma-3b-mix-224 and run:  MODEL_PATH=/path/to/it PROMPT="caption en" \
  IMAGE_FILE_PATH=test_images/astronaut.png ./launch_inference.sh
==================================================================================
NOTE
mkdir -p "$here/artifacts"
for prompt in "caption en" "answer en how many shapes?" "answer en what color is the square?" "detect square"; do
    echo "> $prompt"
    if [ "$prompt" = "detect square" ]; then
        run --prompt "$prompt" --annotate "$here/artifacts/demo-detect.png" "$@"
    else
        run --prompt "$prompt" "$@"
    fi
done
