"""Template library: templates, versions, fields, roles, workflow settings and approval."""
