"""How `commdesk-billing` fails: one plain line on stderr and an exit code, never a traceback.

Exit codes (docs/runbook.md):
    0   done
    1   done, and what was checked is not right (ledger findings, a wallet's drift,
        open reconciliation findings): the command's output says what
    2   the command line is wrong (click's own usage errors)
    3   refused: the thing named does not exist or the request is not allowed
    4   a dependency did not answer (PostgreSQL, RabbitMQ, Redis, MongoDB, Cashfree): nothing
        was changed by this run; run it again once it is back
    5   the configuration (BILLING_* environment) is not valid
    70  a bug: an error nobody foresaw. The line names its type; BILLING_CLI_TRACEBACK=1 shows
        the traceback for a bug report
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import click
from pydantic import ValidationError

from commdesk_billing.errors import DomainError

EXIT_FINDINGS = 1
EXIT_REFUSED = 3
EXIT_UNAVAILABLE = 4
EXIT_CONFIG = 5
EXIT_BUG = 70


class Failure(click.ClickException):
    """A failure already put in words: `Error: <message>` and its exit code (click prints
    it and exits with the class's `exit_code`). Made by `Failure.of(message, exit_code)`."""

    @staticmethod
    def of(message: str, exit_code: int) -> Failure:
        return _KINDS.get(exit_code, Bug)(message)


class Findings(Failure):
    exit_code = EXIT_FINDINGS


class Refused(Failure):
    exit_code = EXIT_REFUSED


class Unavailable(Failure):
    exit_code = EXIT_UNAVAILABLE


class ConfigInvalid(Failure):
    exit_code = EXIT_CONFIG


class Bug(Failure):
    exit_code = EXIT_BUG


_KINDS: dict[int, type[Failure]] = {
    EXIT_FINDINGS: Findings,
    EXIT_REFUSED: Refused,
    EXIT_UNAVAILABLE: Unavailable,
    EXIT_CONFIG: ConfigInvalid,
    EXIT_BUG: Bug,
}


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:300]


def _unavailable(exc: BaseException) -> str | None:
    """What did not answer, if `exc` is a dependency away (not a bug of ours)."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(exc, (OperationalError, InterfaceError)):
        return f"the database did not answer ({_first_line(str(exc.orig or exc))})"
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return f"the database connection was lost ({_first_line(str(exc.orig or exc))})"
    if isinstance(exc, DBAPIError) and "does not exist" in str(exc.orig or ""):
        # The configured database itself is missing (not yet created / migrated).
        return (
            f"the database is not there ({_first_line(str(exc.orig))}); create it and run `migrate`"
        )
    name = type(exc).__module__
    if name.startswith(("aio_pika", "aiormq", "pamqp")):
        return f"RabbitMQ did not answer ({type(exc).__name__}: {_first_line(str(exc))})"
    if name.startswith("redis"):
        return f"Redis did not answer ({_first_line(str(exc))})"
    if name.startswith(("pymongo", "motor")):
        return f"MongoDB did not answer ({_first_line(str(exc))})"
    if name.startswith("httpx"):
        return f"an HTTP dependency did not answer ({type(exc).__name__}: {_first_line(str(exc))})"
    if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror)):
        return f"a dependency did not answer ({type(exc).__name__}: {_first_line(str(exc))})"
    if isinstance(exc, OSError) and exc.errno is not None and "connect" in str(exc).lower():
        return f"a dependency did not answer ({_first_line(str(exc))})"
    return None


def translate(exc: BaseException) -> Failure:
    """The plain failure for an exception a command let through."""
    if isinstance(exc, ValidationError):
        errors = exc.errors()
        where = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors[:3]) or "settings"
        return ConfigInvalid(f"configuration is not valid: {where}: {errors[0]['msg']}")
    if isinstance(exc, DomainError):
        kind = Unavailable if exc.status >= 500 else Refused
        return kind(f"{exc.detail} ({exc.code})")
    cause: BaseException | None = exc
    seen = 0
    while cause is not None and seen < 5:  # an error wrapped by the driver or a TaskGroup
        if (what := _unavailable(cause)) is not None:
            return Unavailable(f"{what}; nothing was changed by this run")
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return Bug(
        f"unexpected {type(exc).__name__}: {_first_line(str(exc)) or 'no message'}"
        " (a bug; BILLING_CLI_TRACEBACK=1 shows where)"
    )


class PlainErrors(click.Group):
    """The root group: whatever a subcommand raises becomes one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            if type(exc) is click.ClickException:
                # A command's own refusal (`raise click.ClickException(...)`): refused, 3.
                raise Refused(exc.message) from None
            raise  # usage errors (2) and failures already classified
        except (click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            raise click.Abort() from None
        except Exception as exc:
            if os.environ.get("BILLING_CLI_TRACEBACK") == "1":
                raise
            failure = translate(exc)
            # Flush what the command printed so far before the error line.
            sys.stdout.flush()
            raise failure from None
