"""The platform's own error: a condition a person must fix, with the fix in the message.

Raised by the core wherever data, a spec or a decision cannot go on; Dagster shows the
message on the failed step, the CLI prints it as one line (exit status 2).
"""


class PlatformError(ValueError):
    """Something a person must fix; the message says what, where, and how."""
