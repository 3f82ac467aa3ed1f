"""The operator console (SPEC §12): a web console for the people who run the gateway, in
its own process (``paygate console``) on the gateway's database.

Modules: ``app`` (the application and its lifespan), ``web`` (what pages share: services,
templates, the page and form wrappers), ``accounts`` (Argon2id passwords, lockout),
``sessions`` (cookie sessions, hashed at rest), ``security`` (CSRF, Origin, headers),
``roles`` (the one permission table), ``actions`` (the record of operators' actions),
``pages/`` (one module per page, each exporting ``routes``), ``cli`` (``paygate console``,
``paygate operators …``). docs/operations.md "Console" has the policies.
"""
