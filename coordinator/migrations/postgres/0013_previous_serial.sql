-- Renew retires the certificate it replaces: the old serial is kept only until the new
-- certificate is first used (an updater that crashed before saving the new one still gets in).
ALTER TABLE agent_identities ADD COLUMN previous_serial TEXT;
