# Sourced from the checkout's root by examples/run-demo and
# examples/nginx/run: starts the bundled emulator on 127.0.0.1 and exports
# the settings the examples read, pointing at it with its seeded keys
# (spec/emulator/README.md). The caller stops it:
#   spec/emulator/emulator stop "$BEARER_EMULATOR_PREFIX"
eval "$(spec/emulator/emulator start)"
[ -n "${BEARER_EMULATOR_PREFIX:-}" ] || exit 1   # the launcher said why on stderr

export OVERTEN_API_KEY=sk_live_0123456789abcdefABCDEF012345
export OVERTEN_BASE_URL="$BEARER_EMULATOR_URL/api/v1"
export OPTIVERSE_API_KEY=optiuser_v1_test_4f9a2c1d8e7b6a5f
export OPTIVERSE_BASE_URL="$BEARER_EMULATOR_URL/external-api"
