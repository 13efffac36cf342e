#!/usr/bin/env bash
# Create what the dev overlay's secretGenerator reads, under secrets/ (git-ignored):
#   secrets/redis-password                    a random URL-safe Redis password (no trailing newline)
#   secrets/wallets/agora/hotkeys/<neuron>    one new hotkey per neuron, made by `agora wallet new-hotkey`
# Existing files are kept, so running it again changes nothing. Only hotkeys are made here: the
# coldkey that registers and stakes them stays on your workstation, never in the cluster.
# Uses `agora` from PATH, else the repository's .venv (AGORA_BIN overrides both).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
secrets="$here/secrets"
agora="${AGORA_BIN:-$(command -v agora || echo "$here/../../../../.venv/bin/agora")}"

neurons=(
  miner-next-token-gemma3 miner-next-token-smollm2 validator-next-token-0 validator-next-token-1
  miner-translation-gemma3 miner-translation-smollm2 validator-translation-0
  miner-embedding-mpnet miner-embedding-minilm validator-embedding-0
)

umask 077
mkdir -p "$secrets"
if [[ ! -s "$secrets/redis-password" ]]; then
  python3 -c 'import secrets, sys; sys.stdout.write(secrets.token_hex(32))' > "$secrets/redis-password"
  echo "wrote $secrets/redis-password"
fi
for neuron in "${neurons[@]}"; do
  if [[ ! -s "$secrets/wallets/agora/hotkeys/$neuron" ]]; then
    "$agora" wallet new-hotkey --wallet.path "$secrets/wallets" --wallet.name agora --wallet.hotkey "$neuron" \
      --json > /dev/null
  fi
  printf '%-28s %s\n' "$neuron" "$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["ss58Address"])' \
    "$secrets/wallets/agora/hotkeys/$neuron")"
done
echo "register these hotkeys on their subnets from the workstation that holds the coldkey"
