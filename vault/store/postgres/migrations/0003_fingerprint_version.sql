-- Version 3: which version of the fingerprint secret each token's
-- fingerprint was computed under, so that the secret can rotate and the
-- records be rewritten (vaultd's background job, `obol keys refingerprint`).
ALTER TABLE tokens ADD COLUMN fingerprint_version integer NOT NULL DEFAULT 1;
CREATE INDEX tokens_fingerprint_version ON tokens (fingerprint_version, token);
