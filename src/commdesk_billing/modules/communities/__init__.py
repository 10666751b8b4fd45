"""Communities: CommDesk's communities as billing sees them, and the money members spend in
them (DESIGN §10).

`directory` reads communities from CommDesk's MongoDB (never writes it) through a short
cache; `mongo` makes the client; `deps` hands the API's directory to routes. `fees` splits a
spend into the platform's fee and the community's share; `spends` writes a spend or its
reversal with the wallet and the ledger in one transaction; `repository` is the SQL;
`auth` says who may do what; `api` the routes; `invariants` the checks `ledger verify` runs.
"""
