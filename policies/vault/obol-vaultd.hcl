# obol-vaultd: exactly what vaultd needs, nothing else.
# Paths assume the defaults of `obol vault setup`: transit mount "transit",
# KEK "obol-kek", fingerprint secret at KV v2 "secret/obol/fingerprint".

# Generate data keys (returned in plaintext to vaultd and wrapped under the KEK).
path "transit/datakey/plaintext/obol-kek" {
  capabilities = ["update"]
}

# Unwrap stored data keys.
path "transit/decrypt/obol-kek" {
  capabilities = ["update"]
}

# Rewrap stored data keys to the latest KEK version (key rotation).
path "transit/rewrap/obol-kek" {
  capabilities = ["update"]
}

# Read the KEK's metadata (latest and minimum versions) to check it at start.
path "transit/keys/obol-kek" {
  capabilities = ["read"]
}

# Read the root of the per-merchant fingerprint keys.
path "secret/data/obol/fingerprint" {
  capabilities = ["read"]
}

# Record the head of Obol's hash-chained audit trail (write only: vaultd
# cannot read back or list anchors; the auditor reads them).
path "secret/data/obol/audit-anchor" {
  capabilities = ["create", "update"]
}

# Renew and look up its own token (AppRole tokens are renewable).
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
