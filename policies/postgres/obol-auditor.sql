-- obol-auditor: read Obol's audit trail and nothing else in the vault
-- database (no tokens, no ciphertext, no keys). Run as the database owner.
CREATE ROLE obol_auditor LOGIN;
GRANT CONNECT ON DATABASE obol_vault TO obol_auditor;
GRANT USAGE ON SCHEMA public TO obol_auditor;
GRANT SELECT ON audit_events TO obol_auditor;
-- The schema's version, so that obol audit checks it (it runs no DDL).
GRANT SELECT ON schema_migrations TO obol_auditor;
-- Used with: obol audit list|verify --postgres-url postgres://obol_auditor@…/obol_vault
