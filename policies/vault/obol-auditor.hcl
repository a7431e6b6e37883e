# obol-auditor: read-only evidence, nothing that touches data. Key metadata
# (versions, rotation period) and the anchor of Obol's hash-chained audit
# trail, which vaultd writes to Vault so that a rewrite of the trail in
# PostgreSQL is detectable by `obol audit verify`.

path "transit/keys/obol-kek" {
  capabilities = ["read"]
}

path "secret/data/obol/audit-anchor" {
  capabilities = ["read"]
}

path "secret/metadata/obol/audit-anchor" {
  capabilities = ["read"]
}
