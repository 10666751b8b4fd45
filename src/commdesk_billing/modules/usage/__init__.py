"""Usage metering: CommDesk services report usage events in batches; each is rated by the
price book version in force when it occurred and debited from the member's wallet through
the wallet's batch debit path (DESIGN §12, issue 15).

`rating` is the arithmetic (graduated tiers in milli-credits, the month's running total
rounded to whole credits); `pricebook` manages the versions; `metering` records and rates a
batch; `debts` decides what an overdraft leaves owing and repays it; `summary` reads the
aggregates; `repository` is the SQL; `auth` says who may do what; `api` the routes;
`consumers` clears debts when credits arrive; `invariants` the checks `ledger verify` runs.
"""
