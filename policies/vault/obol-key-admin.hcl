# obol-key-admin: the security team's key operations on the KEK, and no data
# access. Rotate the KEK, set minimum decryption/encryption versions and the
# automatic rotation period, read key metadata. No encrypt, decrypt, data
# keys, export, backup or delete; the config endpoint is limited to the three
# version/period parameters, so it cannot make the key exportable or deletable.

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
