"""Partners: referrers and resellers who earn a revenue share of the purchases of the users
they brought (DESIGN §11).

`shares` is the arithmetic (the share of a purchase, what a refund takes back of it);
`service` decides when to post: a credited purchase by an attributed user, a successful
refund of one — each called from the payment's or refund's own transaction; `repository`
is the SQL; `auth` says who may do what; `api` the routes; `invariants` the checks
`ledger verify` runs.
"""
