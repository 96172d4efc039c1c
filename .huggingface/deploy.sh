#!/usr/bin/env bash
# Upload this repository to a Space: .huggingface/deploy.sh OWNER/SPACE_NAME   (needs `hf auth login`)
set -euo pipefail
cd "$(dirname "$0")/.."
hf upload "${1:?usage: $0 OWNER/SPACE_NAME}" . . --repo-type space \
    --exclude "runs/*" "out/*" "tests/*" "benchmarks/*" ".ci/*" "*.pyc" "__pycache__/*"
