"""A payment's story: everything that happened to one payment, gathered from the modules
that own each part (attempts, webhooks, state moves, credits, refunds, tax documents), for
the finance console's payment page and the API's timeline. It reads only; it sits above the
modules it reads (payments, refunds, invoices, webhooks, wallet), which never import it."""
