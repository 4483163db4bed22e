# keyvault rotator (Vault / OpenBao KV v2): exactly what `keyvault rotate` does to one secret.
#
#   MOUNT=secret SECRET_PATH=apps/chat envsubst < policies/vault/rotator.hcl \
#     | vault policy write chat-rotator -
#
# The secret itself must exist (an operator creates it): the rotator may write new versions
# (always with cas) but not create the path, delete it, destroy versions or change its metadata.
# Proven against OpenBao in tests/test_policies.py.

# read the current key and older versions; write the promoted / rolled-back key with cas
path "${MOUNT}/data/${SECRET_PATH}" {
  capabilities = ["read", "update"]
}

# list versions (rollback finds the previous key, `keyvault status` shows them)
path "${MOUNT}/metadata/${SECRET_PATH}" {
  capabilities = ["read"]
}

# the staged key, beside the secret: written with cas, removed after promote
path "${MOUNT}/data/${SECRET_PATH}__pending" {
  capabilities = ["create", "read", "update"]
}
path "${MOUNT}/metadata/${SECRET_PATH}__pending" {
  capabilities = ["read", "delete"]
}

# the rotation journal (fingerprints and steps, never keys), written with cas
path "${MOUNT}/data/${SECRET_PATH}__keyvault-state" {
  capabilities = ["create", "read", "update"]
}
path "${MOUNT}/metadata/${SECRET_PATH}__keyvault-state" {
  capabilities = ["read"]
}
