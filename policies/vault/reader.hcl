# keyvault reader (Vault / OpenBao KV v2): the application reads the current version of its
# one secret. Nothing else: no other path, no metadata, no older versions' listing, no writes.
#
#   MOUNT=secret SECRET_PATH=apps/chat envsubst < policies/vault/reader.hcl \
#     | vault policy write chat-reader -
#
# Reading an older version (?version=N) goes through the same data path: KV v2 cannot separate
# it. Proven against OpenBao in tests/test_policies.py.

path "${MOUNT}/data/${SECRET_PATH}" {
  capabilities = ["read"]
}
