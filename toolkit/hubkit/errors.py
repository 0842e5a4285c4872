"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class HubkitError(Exception):
    """A user-facing failure: the message names the field, file or repo at fault.

    Library code raises it for anything the user can fix (bad input, a refused gate,
    an unreachable endpoint); everything else is a bug and keeps its traceback.
    """
