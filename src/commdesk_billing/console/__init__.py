"""The finance console: server-rendered pages for staff under `/console` (docs/architecture.md
"Finance console"). It sits beside `app.py` and `cli.py`, above the modules: it reads and acts
only through their services, as the API's routes do, with its own sign-in (staff accounts and
server-side sessions, `sessions.py`)."""
