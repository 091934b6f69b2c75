-- An invitation's role is a preset or a custom role's key.
ALTER TABLE tenant_invitations DROP CONSTRAINT tenant_invitations_role_check;
