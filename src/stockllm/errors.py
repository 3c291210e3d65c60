"""The one exception type users see.

Every bad input (unknown company, malformed CSV, missing key, unreachable server…) is raised as a
:class:`StockLLMError` whose message is a single line naming the problem and the fix. The CLI prints it
as ``error: <message>`` and exits with status 2 — never a traceback.
"""


class StockLLMError(Exception):
    """A problem the user can fix; ``str(err)`` is one line saying what is wrong and what to do."""
