class HeteroAKDError(Exception):
    """A problem with the user's input; its message names the problem and the fix. The CLI prints it as one
    line, no traceback."""
