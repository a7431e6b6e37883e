# obol-break-glass: the emergency role. OFF BY DEFAULT: `obol vault setup`
# writes this policy but attaches it to nothing. Grant it only through your
# break-glass procedure (two people, a short-lived token, an incident ticket),
# and revoke the token afterwards. Vault's audit device records every use.
#
# It allows what recovering from a broken rotation or a broken vaultd needs:
#   - decrypt wrapped DEKs (to re-encrypt data outside a failed vaultd);
#   - rewrap wrapped DEKs, rotate the KEK, and change min_decryption_version /
#     min_encryption_version / auto_rotate_period (e.g. to lower
#     min_decryption_version again if DEKs were not all rewrapped);
#   - read key metadata, the fingerprint secret and the audit anchor.
# It still does NOT allow: generating data keys, encrypting, exporting or
# backing up the KEK, deleting it, or making it exportable or deletable,
# or writing policies.

path "transit/decrypt/obol-kek" {
  capabilities = ["update"]
}

path "transit/rewrap/obol-kek" {
  capabilities = ["update"]
}

path "transit/keys/obol-kek/rotate" {
  capabilities = ["update"]
}

path "transit/keys/obol-kek/config" {
  capabilities = ["update"]
  allowed_parameters = {
    "min_decryption_version" = []
    "min_encryption_version" = []
    "auto_rotate_period"     = []
  }
}

path "transit/keys/obol-kek" {
  capabilities = ["read"]
}

path "secret/data/obol/fingerprint" {
  capabilities = ["read"]
}

path "secret/data/obol/audit-anchor" {
  capabilities = ["read"]
}
